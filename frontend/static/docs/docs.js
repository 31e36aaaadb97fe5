// Starts Swagger UI on the gateway's own OpenAPI document. validatorUrl null: no call to an online validator.
window.addEventListener("DOMContentLoaded", function () {
  window.ui = window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#api-reference",
    deepLinking: true,
    validatorUrl: null,
    layout: "BaseLayout",
    presets: [window.SwaggerUIBundle.presets.apis],
    persistAuthorization: false,
  });
});
