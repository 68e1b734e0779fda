"""Static checks of the deployment files: docker-compose.yml, deploy/*.Dockerfile, deploy/kubernetes."""
