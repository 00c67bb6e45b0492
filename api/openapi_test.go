package api

import (
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes fails when the router has a route openapi.yaml lacks, or the
// spec has a path+method the router lacks. It needs no database: the route table does not
// depend on the services.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc := loadSpec(t)
	e := New(Deps{Log: discardLog()})

	inRouter := map[string]bool{}
	for _, r := range e.Routes() {
		if strings.HasPrefix(r.Method, "echo_") || r.Method == "RouteNotFound" {
			continue // echo-internal routes (none today)
		}
		inRouter[r.Method+" "+echoToOpenAPI(r.Path)] = true
	}
	inSpec := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			inSpec[strings.ToUpper(method)+" "+path] = true
		}
	}
	var missingInSpec, missingInRouter []string
	for k := range inRouter {
		if !inSpec[k] {
			missingInSpec = append(missingInSpec, k)
		}
	}
	for k := range inSpec {
		if !inRouter[k] {
			missingInRouter = append(missingInRouter, k)
		}
	}
	sort.Strings(missingInSpec)
	sort.Strings(missingInRouter)
	if len(missingInSpec) > 0 {
		t.Errorf("routes missing from openapi.yaml:\n  %s", strings.Join(missingInSpec, "\n  "))
	}
	if len(missingInRouter) > 0 {
		t.Errorf("openapi.yaml operations with no route:\n  %s", strings.Join(missingInRouter, "\n  "))
	}
	// Every authenticated operation documents its 401, every operation its 500.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			sec := doc.Security
			if op.Security != nil {
				sec = *op.Security
			}
			if len(sec) > 0 && op.Responses.Status(http.StatusUnauthorized) == nil {
				t.Errorf("%s %s: authenticated but no 401 response", method, path)
			}
			if path != "/healthz" && path != "/readyz" && path != "/openapi.yaml" && op.Responses.Status(http.StatusInternalServerError) == nil {
				t.Errorf("%s %s: no 500 response", method, path)
			}
		}
	}
	if len(inRouter) < 19 {
		t.Errorf("only %d routes registered", len(inRouter))
	}
}

// TestOpenAPIServed checks GET /openapi.yaml and that the repository root's openapi.yaml
// is the same document (the symlink to api/openapi.yaml).
func TestOpenAPIServed(t *testing.T) {
	e := New(Deps{Log: discardLog()})
	for _, path := range []string{"/openapi.yaml", "/openapi.yaml/"} {
		rec := httptestServe(e, request(t, http.MethodGet, path, "", nil))
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/yaml" || rec.Body.String() != string(OpenAPISpec) {
			t.Fatalf("GET %s: %d %q", path, rec.Code, rec.Header().Get("Content-Type"))
		}
	}
	root, err := os.ReadFile(filepath.Join("..", "openapi.yaml"))
	if err != nil {
		t.Fatalf("repository root openapi.yaml: %v", err)
	}
	if string(root) != string(OpenAPISpec) {
		t.Fatal("the repository root openapi.yaml differs from api/openapi.yaml (it should be a symlink)")
	}
}
