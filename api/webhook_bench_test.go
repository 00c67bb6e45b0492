package api

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/botfleet/botfleet/telegram"
)

// BenchmarkWebhook POSTs updates with distinct update_ids to the webhook of a registered
// bot through a real HTTP server (httptest, keep-alive connections, GOMAXPROCS×4 clients)
// and reports requests/s. Each request stores one webhook_events row and enqueues one task.
//
//	go test ./api/ -run '^$' -bench Webhook -benchtime 5s
func BenchmarkWebhook(b *testing.B) {
	te := newEnv(b)
	te.validate = false
	te.e = New(Deps{Tenants: te.tenants, Telegram: te.tg, Contacts: te.contacts, Broadcasts: te.bc,
		DB: te.db, Redis: te.rdb, AdminToken: testAdminToken, Log: discardLog()})
	_, key := te.newTenant("bench")
	bot, info := te.newBot(key, "bench")
	secret := te.emu.WebhookInfo(info.ID).SecretToken
	srv := httptest.NewServer(te.e)
	defer srv.Close()
	url := srv.URL + "/telegram/v1/webhooks/" + bot.BotAppID.String() + "/"
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}

	var next atomic.Int64
	next.Store(1)
	var failed atomic.Int64
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := next.Add(1)
			body := fmt.Appendf(nil, `{"update_id":%d,"message":{"message_id":%d,"date":1700000000,"chat":{"id":%d,"type":"private","first_name":"B"},"from":{"id":%d,"is_bot":false,"first_name":"B"},"text":"hello"}}`,
				id, id, 1000+id%500, 1000+id%500)
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(telegram.SecretHeader, secret)
			resp, err := client.Do(req)
			if err != nil {
				failed.Add(1)
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d webhook requests failed", n, b.N)
	}
}
