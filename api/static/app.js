// The page's script: it talks to the public API only. The key lives in sessionStorage (this tab only), so
// it does not outlive the browser session.
const $ = (id) => document.getElementById(id);
$("key").value = sessionStorage.getItem("upscalerKey") || "";
$("key").addEventListener("change", () => { sessionStorage.setItem("upscalerKey", $("key").value); loadModels(); });
const auth = () => ($("key").value ? { Authorization: `Bearer ${$("key").value}` } : {});
let models = {};
const syncDenoise = () => {
  const offered = Boolean(models[$("model").value] && models[$("model").value].denoise);
  $("denoise").disabled = !offered;
  if (!offered) $("denoise").value = "auto";
};
$("model").addEventListener("change", syncDenoise);
const loadModels = () => fetch("v1/models", { headers: auth() }).then((r) => r.json()).then(({ data }) => {
  $("model").length = 0;
  models = {};
  for (const m of data) {
    models[m.name] = m;
    const option = new Option(`${m.name}${m.default ? " (default)" : ""}`, m.name, m.default, m.default);
    $("model").add(option);
  }
  syncDenoise();
}).catch(() => show("enter the API key to list models", true));
loadModels();
function show(text, isError = false) { $("status").textContent = text; $("status").className = isError ? "error" : ""; }
$("job").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData($("job"));
  $("pair").hidden = true;
  $("before").src = URL.createObjectURL($("image").files[0]);
  show("uploading…");
  let response = await fetch("v1/jobs", { method: "POST", body: form, headers: auth() });
  let job = await response.json();
  if (!response.ok) { show(`${job.code}: ${job.detail}`, true); return; }
  $("progress").hidden = false;
  while (!["succeeded", "failed", "canceled"].includes(job.status)) {
    show(`${job.status} — ${job.input.width}×${job.input.height} → ${job.output.width}×${job.output.height}`);
    $("progress").value = job.progress;
    await new Promise((resolve) => setTimeout(resolve, 700));
    job = await (await fetch(`v1/jobs/${job.id}`, { headers: auth() })).json();
  }
  $("progress").value = job.progress;
  if (job.status !== "succeeded") { show(`${job.status}: ${job.error ? job.error.message : ""}`, true); return; }
  const ran = job.ran ? ` — ${job.ran.model}${job.ran.strength !== null ? ` at strength ${job.ran.strength}` : ""}` +
    ` (${job.ran.reason})` : "";
  show(`done in ${job.timings.total_s.toFixed(1)} s — ${job.output.width}×${job.output.height}, ` +
       `${(job.output.bytes / 1e6).toFixed(2)} MB${ran}`);
  $("after").src = job.result_url;
  $("download").href = job.result_url;
  $("pair").hidden = false;
});
