package api

import (
	"net/http"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/testenv"
)

func TestHealthz(t *testing.T) {
	e := New(Deps{Log: discardLog()})
	for _, path := range []string{"/healthz", "/healthz/"} {
		rec := httptestServe(e, request(t, http.MethodGet, path, "", nil))
		if rec.Code != http.StatusOK || rec.Body.String() != "{\"status\":\"ok\"}\n" {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
}

func TestReadyz(t *testing.T) {
	db := testenv.DB(t)
	rdb := testenv.Redis(t)

	t.Run("200", func(t *testing.T) {
		e := New(Deps{DB: db, Redis: rdb, Log: discardLog()})
		rec := httptestServe(e, request(t, http.MethodGet, "/readyz", "", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		var got readyResponse
		response{Body: rec.Body.Bytes()}.decode(t, &got)
		if got.Status != "ready" || got.Checks["postgres"] != "ok" || got.Checks["redis"] != "ok" {
			t.Fatalf("%+v", got)
		}
	})

	t.Run("503 redis down", func(t *testing.T) {
		down := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1})
		defer down.Close()
		e := New(Deps{DB: db, Redis: down, Log: discardLog()})
		rec := httptestServe(e, request(t, http.MethodGet, "/readyz/", "", nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		var got readyResponse
		response{Body: rec.Body.Bytes()}.decode(t, &got)
		if got.Status != "unavailable" || got.Checks["postgres"] != "ok" || got.Checks["redis"] != "unavailable" {
			t.Fatalf("%+v", got)
		}
	})

	t.Run("503 postgres down", func(t *testing.T) {
		down, err := database.Open("postgres://postgres@" + closedAddr(t) + "/botfleet?sslmode=disable")
		if err != nil {
			t.Fatal(err)
		}
		defer down.Close()
		e := New(Deps{DB: down, Redis: rdb, Log: discardLog()})
		rec := httptestServe(e, request(t, http.MethodGet, "/readyz", "", nil))
		var got readyResponse
		response{Body: rec.Body.Bytes()}.decode(t, &got)
		if rec.Code != http.StatusServiceUnavailable || got.Checks["postgres"] != "unavailable" || got.Checks["redis"] != "ok" {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	})
}
