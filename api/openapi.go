package api

import _ "embed"

// OpenAPISpec is botfleet's REST contract, OpenAPI 3.0.3 (api/openapi.yaml; the repository
// root's openapi.yaml is a symlink to it). GET /openapi.yaml serves it, and
// TestOpenAPIMatchesRoutes keeps it in step with the route table.
//
//go:embed openapi.yaml
var OpenAPISpec []byte
