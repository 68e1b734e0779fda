// Starts Swagger UI on this API's own OpenAPI document (a file, so the page runs under the strict CSP).
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({
    url: "v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "StandaloneLayout",
  });
});
