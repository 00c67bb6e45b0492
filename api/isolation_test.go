package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/callbacks"
	"github.com/botfleet/botfleet/telegram"
)

// This file is the tenant isolation walk (issue "Tenants sealed off"): every route of the
// router, read from the router itself, is called with tenant B's key and tenant A's ids in
// path, query and body. Every answer must be 404 (403 on admin routes), look exactly like
// the answer to random ids, and leave all of A's data (every PostgreSQL row, every Redis key,
// A's bots at Telegram) as it was.

// isoIDs are the ids a request of the walk may name: A's (replaced by random ones for the
// comparison run) and B's own.
type isoIDs struct {
	Bot, Bot2, Contact, Contact2, Message, InboundMessage, Broadcast uuid.UUID // tenant A's
	APIKey                                                           uuid.UUID // tenant A's (its default key)
	OwnBot, OwnContact                                               uuid.UUID // tenant B's
	WebhookEndpoint, WebhookDelivery                                 uuid.UUID // tenant A's (event callbacks)
}

// swapped returns ids with A's ids replaced by fresh random UUIDs (B's kept).
func (ids isoIDs) swapped() isoIDs {
	r := ids
	r.Bot, r.Bot2, r.Contact, r.Contact2 = uuid.New(), uuid.New(), uuid.New(), uuid.New()
	r.Message, r.InboundMessage, r.Broadcast = uuid.New(), uuid.New(), uuid.New()
	r.APIKey = uuid.New()
	r.WebhookEndpoint, r.WebhookDelivery = uuid.New(), uuid.New()
	return r
}

// labels maps each of A's ids to a stable label, for comparing answers across the runs.
func (ids isoIDs) labels() map[string]string {
	return map[string]string{
		ids.Bot.String(): "<bot>", ids.Bot2.String(): "<bot2>", ids.Contact.String(): "<contact>",
		ids.Contact2.String(): "<contact2>", ids.Message.String(): "<message>",
		ids.InboundMessage.String(): "<inbound>", ids.Broadcast.String(): "<broadcast>",
		ids.APIKey.String(): "<api_key>",

		ids.WebhookEndpoint.String(): "<webhook_endpoint>", ids.WebhookDelivery.String(): "<webhook_delivery>",
	}
}

// isoRequest is one request of the walk. path has the route's parameters filled in.
type isoRequest struct {
	method string // set by the walk from the route
	name   string
	path   string
	query  url.Values
	body   any
	header map[string]string
	want   int    // expected status
	code   string // expected error code ("" for a 2xx)
}

// isoCase says how to exercise one route. A case with exempt set is not compared with the
// random-id answers (the reason says why); its requests, if any, are still made and checked.
type isoCase struct {
	exempt string
	reqs   func(ids isoIDs, fx *isoFixture) []isoRequest
}

// isoFixture is what the setup created and the requests need besides ids.
type isoFixture struct {
	botToken     string // A's bot's token (B may have obtained it)
	ownSecret    string // the webhook secret of B's bot
	cursors      map[string]string
	broadcastFor func(bot *uuid.UUID, recipients ...uuid.UUID) map[string]any
}

// q builds a query from name, value pairs.
func q(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

// isolationCases is the table: one entry per route (METHOD + echo path). A new route
// without an entry fails TestIsolation_EveryRoute.
func isolationCases() map[string]isoCase {
	notFound := func(code string) func(name, path string, query url.Values, body any) isoRequest {
		return func(name, path string, query url.Values, body any) isoRequest {
			return isoRequest{name: name, path: path, query: query, body: body, want: http.StatusNotFound, code: code}
		}
	}
	botNF, contactNF, messageNF, bcNF := notFound("bot_not_found"), notFound("contact_not_found"), notFound("message_not_found"), notFound("broadcast_not_found")
	// list is a list request of B's: 200 with none of A's items (checked by the walk).
	list := func(name, path string, query url.Values) isoRequest {
		return isoRequest{name: name, path: path, query: query, want: http.StatusOK}
	}
	ops := isoCase{exempt: "unauthenticated operations endpoint: serves no tenant data"}
	return map[string]isoCase{
		"GET /healthz":      ops,
		"GET /readyz":       ops,
		"GET /openapi.yaml": ops,

		// The operator's tools (ops.go): a tenant key is refused.
		"GET /metrics": {reqs: func(isoIDs, *isoFixture) []isoRequest {
			return []isoRequest{{name: "tenant key", path: "/metrics", want: http.StatusForbidden, code: "forbidden"}}
		}},
		"GET /admin/queues/*": {reqs: func(isoIDs, *isoFixture) []isoRequest {
			return []isoRequest{
				{name: "tenant key, page", path: "/admin/queues/", want: http.StatusForbidden, code: "forbidden"},
				{name: "tenant key, api", path: "/admin/queues/api/queues", want: http.StatusForbidden, code: "forbidden"},
			}
		}},
		"POST /admin/queues/*": {reqs: func(isoIDs, *isoFixture) []isoRequest {
			return []isoRequest{{name: "tenant key", path: "/admin/queues/api/queues/default:pause", want: http.StatusForbidden, code: "forbidden"}}
		}},
		"DELETE /admin/queues/*": {reqs: func(isoIDs, *isoFixture) []isoRequest {
			return []isoRequest{{name: "tenant key", path: "/admin/queues/api/queues/default", want: http.StatusForbidden, code: "forbidden"}}
		}},

		"POST /admin/v1/tenants/": {reqs: func(isoIDs, *isoFixture) []isoRequest {
			return []isoRequest{{name: "tenant key", path: "/admin/v1/tenants/", body: map[string]any{"name": "B's own tenant"}, want: http.StatusForbidden, code: "forbidden"}}
		}},

		// Telegram calls it, authenticated by the per-bot secret, not by an API key: a
		// bot_app_id that exists answers 401 to a wrong secret and an unknown one 404, so its
		// answers are not compared with random ids. A's bot with no, a wrong, or B's own
		// bot's secret must store nothing (the snapshot comparison checks it).
		"POST /telegram/v1/webhooks/:bot_app_id/": {
			exempt: "authenticated by the per-bot secret header, not by an API key",
			reqs: func(ids isoIDs, fx *isoFixture) []isoRequest {
				p := "/telegram/v1/webhooks/" + ids.Bot.String() + "/"
				upd := map[string]any{"update_id": 990001, "message": map[string]any{"message_id": 1, "date": 1700000000,
					"chat": map[string]any{"id": 666, "type": "private", "first_name": "Mallory"}, "from": map[string]any{"id": 666, "is_bot": false, "first_name": "Mallory"}, "text": "/start"}}
				bad := func(name, secret string) isoRequest {
					r := isoRequest{name: name, path: p, body: upd, want: http.StatusUnauthorized, code: "invalid_secret_token"}
					if secret != "" {
						r.header = map[string]string{telegram.SecretHeader: secret}
					}
					return r
				}
				return []isoRequest{bad("no secret", ""), bad("wrong secret", "wrong-secret"), bad("B's bot's secret", fx.ownSecret)}
			},
		},

		"POST /telegram/v1/bots/": {
			// The body names no tenant id; the one foreign thing B can send is A's bot
			// token. It must not register the bot twice (a second setWebhook would take A's
			// updates): 409, before any call that changes the webhook (the snapshot checks
			// A's webhook URL and secret). A random token is not a comparison (Telegram
			// rejects it), hence exempt.
			exempt: "the body carries a bot token, not an id: 409 bot_already_registered is the answer to an already registered token whoever owns it",
			reqs: func(ids isoIDs, fx *isoFixture) []isoRequest {
				return []isoRequest{{name: "A's token", path: "/telegram/v1/bots/", body: map[string]any{"name": "stolen", "bot_token": fx.botToken}, want: http.StatusConflict, code: "bot_already_registered"}}
			},
		},
		"GET /telegram/v1/bots/": {reqs: func(ids isoIDs, fx *isoFixture) []isoRequest {
			return []isoRequest{
				list("list", "/telegram/v1/bots/", nil),
				list("A's cursor", "/telegram/v1/bots/", q("cursor", fx.cursors["bots"])),
			}
		}},
		"GET /telegram/v1/bots/:bot_app_id/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/", nil, nil)}
		}},
		"PUT /telegram/v1/bots/:bot_app_id/": {reqs: func(ids isoIDs, fx *isoFixture) []isoRequest {
			return []isoRequest{
				botNF("rename", "/telegram/v1/bots/"+ids.Bot.String()+"/", nil, map[string]any{"name": "stolen", "daily_limit": 1}),
				botNF("empty body object", "/telegram/v1/bots/"+ids.Bot2.String()+"/", nil, map[string]any{}),
				// Token and lifecycle: 404 before any Bot API call (A's webhook and token stay,
				// the snapshot checks them), even with A's own token.
				botNF("rotate with A's token", "/telegram/v1/bots/"+ids.Bot.String()+"/", nil, map[string]any{"bot_token": fx.botToken}),
				botNF("disable", "/telegram/v1/bots/"+ids.Bot2.String()+"/", nil, map[string]any{"status": "disabled"}),
			}
		}},
		"POST /telegram/v1/bots/:bot_app_id/validate/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/validate", nil, nil)}
		}},
		"POST /telegram/v1/validate-token/": {
			// Stores nothing and names no id; getMe answers whoever holds a token, as Telegram
			// does, so B's request carries a token Telegram rejects.
			exempt: "the body carries a bot token, not an id; nothing is stored",
			reqs: func(isoIDs, *isoFixture) []isoRequest {
				return []isoRequest{{name: "unknown token", path: "/telegram/v1/validate-token", body: map[string]any{"bot_token": "999999:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
					want: http.StatusUnprocessableEntity, code: "invalid_bot_token"}}
			},
		},
		"DELETE /telegram/v1/bots/:bot_app_id/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/", nil, nil)}
		}},
		// Health, sync and commands (bot_health.go): A's bot is 404 before any Bot API call
		// (the snapshot checks A's webhook and commands at Telegram).
		"GET /telegram/v1/bots/:bot_app_id/health/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/health/", nil, nil)}
		}},
		"POST /telegram/v1/bots/:bot_app_id/sync/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/sync/", nil, nil)}
		}},
		"GET /telegram/v1/bots/:bot_app_id/commands/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/commands/", nil, nil),
				botNF("A's bot, language", "/telegram/v1/bots/"+ids.Bot2.String()+"/commands/", q("language_code", "de"), nil),
			}
		}},
		// Test sends, chat lookups and usage (bot_ops.go).
		"POST /telegram/v1/bots/:bot_app_id/test/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/test/", nil, map[string]any{"chat_id": 42, "text": "from B"})}
		}},
		"POST /telegram/v1/bots/:bot_app_id/lookup-chat/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/lookup-chat/", nil, map[string]any{"chat_id": 42})}
		}},
		"GET /telegram/v1/bots/:bot_app_id/usage/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/usage/", nil, nil)}
		}},
		// Groups and channels of a bot (bot_chats.go).
		"GET /telegram/v1/bots/:bot_app_id/chats/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/chats/", nil, nil),
				botNF("A's bot, filtered", "/telegram/v1/bots/"+ids.Bot2.String()+"/chats/", q("status", "member"), nil),
			}
		}},
		"PUT /telegram/v1/bots/:bot_app_id/commands/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			cmds := []map[string]string{{"command": "stolen", "description": "B's command"}}
			return []isoRequest{
				botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/commands/", nil, map[string]any{"commands": cmds}),
				botNF("A's bot, language", "/telegram/v1/bots/"+ids.Bot2.String()+"/commands/", nil, map[string]any{"commands": cmds, "language_code": "de"}),
			}
		}},
		"GET /telegram/v1/webhook-events/": {reqs: func(ids isoIDs, fx *isoFixture) []isoRequest {
			return []isoRequest{
				list("list", "/telegram/v1/webhook-events/", nil),
				list("A's cursor", "/telegram/v1/webhook-events/", q("cursor", fx.cursors["events"])),
				botNF("?bot_app_id= A's bot", "/telegram/v1/webhook-events/", q("bot_app_id", ids.Bot.String()), nil),
				botNF("?bot_app_id= A's bot, limit", "/telegram/v1/webhook-events/", q("bot_app_id", ids.Bot2.String(), "limit", "1"), nil),
			}
		}},

		// Reply templates (bot_templates.go): A's bot answers 404 bot_not_found for every key,
		// built-in or tenant-defined, and nothing is saved, locked or sent.
		"GET /telegram/v1/bots/:bot_app_id/templates/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/templates/", nil, nil)}
		}},
		"GET /telegram/v1/bots/:bot_app_id/templates/:key/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				botNF("A's bot, welcome", "/telegram/v1/bots/"+ids.Bot.String()+"/templates/welcome/", nil, nil),
				botNF("A's bot, tenant key", "/telegram/v1/bots/"+ids.Bot2.String()+"/templates/status/", nil, nil),
			}
		}},
		"PUT /telegram/v1/bots/:bot_app_id/templates/:key/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				botNF("A's bot, welcome", "/telegram/v1/bots/"+ids.Bot.String()+"/templates/welcome/", nil, map[string]any{"text": "stolen {first_name}"}),
				botNF("A's bot, new key", "/telegram/v1/bots/"+ids.Bot2.String()+"/templates/status/", nil, map[string]any{"text": "stolen", "command": "status"}),
			}
		}},
		"DELETE /telegram/v1/bots/:bot_app_id/templates/:key/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/templates/status/", nil, nil)}
		}},
		"GET /telegram/v1/bots/:bot_app_id/templates/:key/history/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/templates/welcome/history/", nil, nil)}
		}},
		"POST /telegram/v1/bots/:bot_app_id/templates/:key/rollback/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/templates/welcome/rollback/", nil, map[string]any{"version": 1})}
		}},
		"POST /telegram/v1/bots/:bot_app_id/templates/:key/reset/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/templates/welcome/reset/", nil, nil)}
		}},
		"POST /telegram/v1/bots/:bot_app_id/templates/:key/lock/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/templates/welcome/lock/", nil, nil)}
		}},
		"DELETE /telegram/v1/bots/:bot_app_id/templates/:key/lock/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/templates/welcome/lock/", nil, nil)}
		}},
		"POST /telegram/v1/bots/:bot_app_id/templates/:key/test/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/telegram/v1/bots/"+ids.Bot.String()+"/templates/welcome/test/", nil, map[string]any{"chat_id": 7001})}
		}},

		"GET /contacts/": {reqs: func(ids isoIDs, fx *isoFixture) []isoRequest {
			return []isoRequest{
				list("list", "/contacts/", nil),
				list("A's cursor", "/contacts/", q("cursor", fx.cursors["contacts"])),
				botNF("?bot_app_id= A's bot", "/contacts/", q("bot_app_id", ids.Bot.String()), nil),
				botNF("?bot_app_id= A's bot, A's cursor", "/contacts/", q("bot_app_id", ids.Bot.String(), "cursor", fx.cursors["contacts"]), nil),
			}
		}},
		"GET /contacts/:id/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{contactNF("A's contact", "/contacts/"+ids.Contact.String()+"/", nil, nil)}
		}},
		"PATCH /contacts/:id/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				contactNF("A's contact, tags and attributes", "/contacts/"+ids.Contact.String()+"/", nil,
					map[string]any{"tags": []string{"stolen"}, "attributes": map[string]any{"plan": "free"}}),
				contactNF("A's contact, empty patch", "/contacts/"+ids.Contact2.String()+"/", nil, map[string]any{}),
				contactNF("A's contact, external_id", "/contacts/"+ids.Contact.String()+"/", nil, map[string]any{"external_id": "stolen"}),
			}
		}},
		"GET /contacts/export/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				list("own contacts", "/contacts/export/", nil),
				botNF("A's bot", "/contacts/export/", q("bot_app_id", ids.Bot.String()), nil),
			}
		}},
		"POST /contacts/import/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			// 200 with the row rejected (contact_not_found), as for a random id; nothing changes.
			return []isoRequest{{name: "A's contact by id", path: "/contacts/import/", header: map[string]string{"Content-Type": "text/csv"},
				body: "id,tags\n" + ids.Contact.String() + ",stolen\n", want: http.StatusOK}}
		}},
		"DELETE /contacts/:id/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{contactNF("A's contact", "/contacts/"+ids.Contact.String()+"/", nil, nil)}
		}},
		"POST /contacts/bulk-tags/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			unknown := notFound("unknown_contacts")
			return []isoRequest{
				unknown("A's contacts", "/contacts/bulk-tags/", nil, map[string]any{"contact_ids": []uuid.UUID{ids.Contact, ids.Contact2}, "add": []string{"stolen"}}),
				unknown("B's and A's contacts", "/contacts/bulk-tags/", nil, map[string]any{"contact_ids": []uuid.UUID{ids.OwnContact, ids.Contact}, "remove": []string{"x"}}),
				botNF("filter A's bot", "/contacts/bulk-tags/", nil, map[string]any{"filter": map[string]any{"bot_app_id": ids.Bot}, "add": []string{"stolen"}}),
				// Every contact of B's (one): matched 1, nothing to remove.
				{name: "empty filter", path: "/contacts/bulk-tags/", body: map[string]any{"filter": map[string]any{}, "remove": []string{"never-set"}}, want: http.StatusOK},
			}
		}},

		// Notification topics (topics.go): A has the topic "a-only" and its contact opted out.
		"GET /topics/": {reqs: func(isoIDs, *isoFixture) []isoRequest {
			return []isoRequest{list("list", "/topics/", nil)}
		}},
		"POST /topics/": {reqs: func(isoIDs, *isoFixture) []isoRequest {
			// Creating would change the snapshot of the tables; a bad name shows the route runs.
			return []isoRequest{{name: "bad name", path: "/topics/", body: map[string]any{"name": "A's"}, want: http.StatusUnprocessableEntity, code: "invalid_field"}}
		}},
		"DELETE /topics/:name/": {reqs: func(isoIDs, *isoFixture) []isoRequest {
			return []isoRequest{notFound("topic_not_found")("A's topic", "/topics/a-only/", nil, nil)}
		}},
		"GET /contacts/:id/topics/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{contactNF("A's contact", "/contacts/"+ids.Contact.String()+"/topics/", nil, nil)}
		}},
		"PUT /contacts/:id/topics/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				contactNF("A's contact", "/contacts/"+ids.Contact.String()+"/topics/", nil, map[string]any{"a-only": true}),
				{name: "B's contact, A's topic", path: "/contacts/" + ids.OwnContact.String() + "/topics/", body: map[string]any{"a-only": false}, want: http.StatusUnprocessableEntity, code: "invalid_field"},
			}
		}},
		// Account linking (linking.go).
		"POST /contacts/link-tokens/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{botNF("A's bot", "/contacts/link-tokens/", nil, map[string]any{"external_id": "acct-1", "bot_app_id": ids.Bot})}
		}},
		"POST /contacts/verification-codes/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				botNF("A's bot", "/contacts/verification-codes/", nil, map[string]any{"external_id": "acct-1", "bot_app_id": ids.Bot, "username": "AliceOfTenantA"}),
				contactNF("B's bot, a name of A's", "/contacts/verification-codes/", nil, map[string]any{"external_id": "acct-1", "bot_app_id": ids.OwnBot, "username": "AliceOfTenantA"}),
			}
		}},
		"POST /contacts/verify/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{notFound("verification_not_found")("A's pending code", "/contacts/verify/", nil, map[string]any{"external_id": "a-acct", "code": "123456"})}
		}},
		// Team inbox (inbox.go).
		"GET /contacts/:id/messages/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				contactNF("A's contact", "/contacts/"+ids.Contact.String()+"/messages/", nil, nil),
				contactNF("A's contact, page/size", "/contacts/"+ids.Contact2.String()+"/messages/", q("page", "1", "size", "10"), nil),
			}
		}},
		"POST /contacts/:id/messages/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				contactNF("A's contact, B's bot", "/contacts/"+ids.Contact.String()+"/messages/", nil, map[string]any{"bot_app_id": ids.OwnBot, "text": "from B"}),
				botNF("A's contact, A's bot", "/contacts/"+ids.Contact2.String()+"/messages/", nil, map[string]any{"bot_app_id": ids.Bot, "text": "from B"}),
			}
		}},
		"GET /contacts/:id/messages/:mid/file/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				messageNF("A's contact, A's inbound message", "/contacts/"+ids.Contact.String()+"/messages/"+ids.InboundMessage.String()+"/file/", nil, nil),
				messageNF("B's contact, A's inbound message", "/contacts/"+ids.OwnContact.String()+"/messages/"+ids.InboundMessage.String()+"/file/", nil, nil),
			}
		}},
		"GET /conversations/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				list("list", "/conversations/", nil),
				botNF("?bot_app_id= A's bot", "/conversations/", q("bot_app_id", ids.Bot.String()), nil),
			}
		}},
		"POST /conversations/:contact_id/read/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{notFound("conversation_not_found")("A's contact", "/conversations/"+ids.Contact.String()+"/read/", nil, nil)}
		}},
		"POST /conversations/:contact_id/assign/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{notFound("conversation_not_found")("A's contact", "/conversations/"+ids.Contact.String()+"/assign/", nil, map[string]any{"api_key_name": nil})}
		}},
		"POST /conversations/:contact_id/close/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{notFound("conversation_not_found")("A's contact", "/conversations/"+ids.Contact.String()+"/close/", nil, nil)}
		}},

		"POST /messages/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			msg := func(bot *uuid.UUID, contact uuid.UUID) map[string]any {
				m := map[string]any{"contact_id": contact, "text": "hello from B"}
				if bot != nil {
					m["bot_app_id"] = *bot
				}
				return m
			}
			return []isoRequest{
				botNF("A's bot, A's contact", "/messages/", nil, msg(&ids.Bot, ids.Contact)),
				botNF("A's bot, B's contact", "/messages/", nil, msg(&ids.Bot, ids.OwnContact)),
				contactNF("B's bot, A's contact", "/messages/", nil, msg(&ids.OwnBot, ids.Contact)),
				contactNF("no bot (B has one), A's contact", "/messages/", nil, msg(nil, ids.Contact2)),
				botNF("A's bot, a group chat_id", "/messages/", nil, map[string]any{"bot_app_id": ids.Bot, "chat_id": -1001234567890, "text": "hello from B"}),
				notFound("chat_not_found")("B's bot, a chat it is not in", "/messages/", nil, map[string]any{"bot_app_id": ids.OwnBot, "chat_id": -1001234567890, "text": "hello from B"}),
			}
		}},
		"GET /messages/:id/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				messageNF("A's outbound message", "/messages/"+ids.Message.String()+"/", nil, nil),
				messageNF("A's inbound message", "/messages/"+ids.InboundMessage.String()+"/", nil, nil),
			}
		}},

		"POST /broadcast/": {reqs: func(ids isoIDs, fx *isoFixture) []isoRequest {
			unknown := notFound("unknown_recipients")
			return []isoRequest{
				botNF("A's bot, A's contacts", "/broadcast/", nil, fx.broadcastFor(&ids.Bot, ids.Contact, ids.Contact2)),
				botNF("A's bot, B's contact", "/broadcast/", nil, fx.broadcastFor(&ids.Bot, ids.OwnContact)),
				unknown("B's bot, A's contact", "/broadcast/", nil, fx.broadcastFor(&ids.OwnBot, ids.Contact)),
				unknown("no bot (B has one), B's and A's contacts", "/broadcast/", nil, fx.broadcastFor(nil, ids.OwnContact, ids.Contact2)),
				botNF("A's bot, segment", "/broadcast/", nil, map[string]any{"name": "A's sale", "platform": "TELEGRAM",
					"message_text": "A's offer", "bot_app_id": ids.Bot, "segment": map[string]any{}}),
			}
		}},
		"GET /broadcast/": {reqs: func(ids isoIDs, fx *isoFixture) []isoRequest {
			return []isoRequest{
				list("list", "/broadcast/", nil),
				list("A's cursor", "/broadcast/", q("cursor", fx.cursors["broadcasts"])),
				list("status filter", "/broadcast/", q("status", "scheduled,running,cancelled")),
				botNF("A's bot filter", "/broadcast/", q("bot_app_id", ids.Bot.String()), nil),
			}
		}},
		"GET /broadcast/:id/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{bcNF("A's broadcast", "/broadcast/"+ids.Broadcast.String()+"/", nil, nil)}
		}},
		"POST /broadcast/:id/cancel/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{bcNF("A's broadcast", "/broadcast/"+ids.Broadcast.String()+"/cancel/", nil, nil)}
		}},
		// Lifecycle (broadcast_control.go): A's broadcast is 404 whatever the body names.
		"PUT /broadcast/:id/": {reqs: func(ids isoIDs, fx *isoFixture) []isoRequest {
			p := "/broadcast/" + ids.Broadcast.String() + "/"
			return []isoRequest{
				bcNF("A's broadcast, B's bot and contact", p, nil, fx.broadcastFor(&ids.OwnBot, ids.OwnContact)),
				bcNF("A's broadcast, A's bot and contacts", p, nil, fx.broadcastFor(&ids.Bot, ids.Contact, ids.Contact2)),
				bcNF("A's broadcast, B's bot, segment", p, nil, map[string]any{"name": "B's", "platform": "TELEGRAM",
					"message_text": "B's offer", "bot_app_id": ids.OwnBot, "segment": map[string]any{}, "draft": true}),
			}
		}},
		"POST /broadcast/:id/send/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{bcNF("A's broadcast", "/broadcast/"+ids.Broadcast.String()+"/send", nil, nil)}
		}},
		"POST /broadcast/:id/pause/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{bcNF("A's broadcast", "/broadcast/"+ids.Broadcast.String()+"/pause/", nil, nil)}
		}},
		"POST /broadcast/:id/resume/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{bcNF("A's broadcast", "/broadcast/"+ids.Broadcast.String()+"/resume/", nil, nil)}
		}},
		"POST /broadcast/:id/retry-failed/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{bcNF("A's broadcast", "/broadcast/"+ids.Broadcast.String()+"/retry-failed", nil, nil)}
		}},
		"POST /broadcast/preview-audience/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			unknown := notFound("unknown_recipients")
			p := "/broadcast/preview-audience/"
			return []isoRequest{
				botNF("A's bot, segment", p, nil, map[string]any{"bot_app_id": ids.Bot, "segment": map[string]any{}}),
				botNF("A's bot, A's contacts", p, nil, map[string]any{"bot_app_id": ids.Bot, "recipients": []uuid.UUID{ids.Contact}}),
				unknown("B's bot, A's contact", p, nil, map[string]any{"bot_app_id": ids.OwnBot, "recipients": []uuid.UUID{ids.Contact}}),
				// B's own audience: 200 with B's contacts only (the walk checks that none of A's shows).
				{name: "B's bot, all its contacts", path: p, body: map[string]any{"bot_app_id": ids.OwnBot, "segment": map[string]any{}}, want: http.StatusOK},
			}
		}},
		"GET /broadcast/:id/recipients/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				bcNF("A's broadcast", "/broadcast/"+ids.Broadcast.String()+"/recipients/", nil, nil),
				bcNF("A's broadcast, status", "/broadcast/"+ids.Broadcast.String()+"/recipients", q("status", "cancelled"), nil),
			}
		}},
		"GET /broadcast/:id/recipients.csv/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{
				bcNF("A's broadcast", "/broadcast/"+ids.Broadcast.String()+"/recipients.csv", nil, nil),
				bcNF("A's broadcast, status", "/broadcast/"+ids.Broadcast.String()+"/recipients.csv/", q("status", "sent"), nil),
			}
		}},

		// API keys (B's key is its default key: scope admin).
		"GET /api-keys/": {reqs: func(ids isoIDs, fx *isoFixture) []isoRequest {
			return []isoRequest{
				list("list", "/api-keys/", nil),
				list("A's cursor", "/api-keys/", q("cursor", fx.cursors["api-keys"])),
			}
		}},
		"POST /api-keys/": {reqs: func(isoIDs, *isoFixture) []isoRequest {
			// The body names no id: a key is always the caller's. B's own live name: 409,
			// nothing created (A has a key of that name too).
			return []isoRequest{{name: "B's taken name", path: "/api-keys/", body: map[string]any{"name": "default", "scopes": []string{"read"}}, want: http.StatusConflict, code: "api_key_name_taken"}}
		}},
		"GET /api-keys/:id/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{notFound("api_key_not_found")("A's key", "/api-keys/"+ids.APIKey.String()+"/", nil, nil)}
		}},
		"DELETE /api-keys/:id/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{notFound("api_key_not_found")("A's key", "/api-keys/"+ids.APIKey.String()+"/", nil, nil)}
		}},

		// Event callbacks (webhook_endpoints.go).
		"GET /webhook-endpoints/": {reqs: func(_ isoIDs, fx *isoFixture) []isoRequest {
			return []isoRequest{
				list("list", "/webhook-endpoints/", nil),
				list("A's cursor", "/webhook-endpoints/", q("cursor", fx.cursors["webhook-endpoints"])),
			}
		}},
		"POST /webhook-endpoints/": {reqs: func(isoIDs, *isoFixture) []isoRequest {
			// The body names no id: an endpoint is always the caller's. A private address
			// is refused (422), so nothing is created.
			return []isoRequest{{name: "private url", path: "/webhook-endpoints/", body: map[string]any{"url": "http://10.0.0.1/x", "events": []string{"*"}},
				want: http.StatusUnprocessableEntity, code: "invalid_field"}}
		}},
		"GET /webhook-endpoints/:id/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{notFound("webhook_endpoint_not_found")("A's endpoint", "/webhook-endpoints/"+ids.WebhookEndpoint.String()+"/", nil, nil)}
		}},
		"PATCH /webhook-endpoints/:id/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{notFound("webhook_endpoint_not_found")("A's endpoint", "/webhook-endpoints/"+ids.WebhookEndpoint.String()+"/", nil,
				map[string]any{"enabled": false, "description": "B was here"})}
		}},
		"PUT /webhook-endpoints/:id/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{notFound("webhook_endpoint_not_found")("A's endpoint", "/webhook-endpoints/"+ids.WebhookEndpoint.String()+"/", nil,
				map[string]any{"enabled": false})}
		}},
		"DELETE /webhook-endpoints/:id/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{notFound("webhook_endpoint_not_found")("A's endpoint", "/webhook-endpoints/"+ids.WebhookEndpoint.String()+"/", nil, nil)}
		}},
		"POST /webhook-endpoints/:id/rotate-secret/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{notFound("webhook_endpoint_not_found")("A's endpoint", "/webhook-endpoints/"+ids.WebhookEndpoint.String()+"/rotate-secret/", nil, nil)}
		}},
		"GET /webhook-endpoints/:id/deliveries/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{notFound("webhook_endpoint_not_found")("A's endpoint", "/webhook-endpoints/"+ids.WebhookEndpoint.String()+"/deliveries/", nil, nil)}
		}},
		"POST /webhook-endpoints/:id/deliveries/:delivery_id/retry/": {reqs: func(ids isoIDs, _ *isoFixture) []isoRequest {
			return []isoRequest{notFound("webhook_endpoint_not_found")("A's delivery", "/webhook-endpoints/"+ids.WebhookEndpoint.String()+"/deliveries/"+ids.WebhookDelivery.String()+"/retry/", nil, nil)}
		}},
	}
}

// routeKeys lists the router's routes as "METHOD path" (echo's internal routes left out).
func routeKeys(e *echo.Echo) []string {
	var keys []string
	for _, r := range e.Routes() {
		if strings.HasPrefix(r.Method, "echo_") || r.Method == "RouteNotFound" {
			continue
		}
		keys = append(keys, r.Method+" "+r.Path)
	}
	sort.Strings(keys)
	return slices.Compact(keys)
}

// uncoveredRoutes returns the routes of e without a case, and the cases without a route.
func uncoveredRoutes(e *echo.Echo, cases map[string]isoCase) (noCase, noRoute []string) {
	inRouter := map[string]bool{}
	for _, k := range routeKeys(e) {
		inRouter[k] = true
		if _, ok := cases[k]; !ok {
			noCase = append(noCase, k)
		}
	}
	for k := range cases {
		if !inRouter[k] {
			noRoute = append(noRoute, k)
		}
	}
	sort.Strings(noRoute)
	return noCase, noRoute
}

// TestIsolation_TableCoversRouter proves that the walk's coverage check can fail: a route
// added to the router without a case is reported.
func TestIsolation_TableCoversRouter(t *testing.T) {
	e := New(Deps{Log: discardLog()})
	cases := isolationCases()
	if noCase, noRoute := uncoveredRoutes(e, cases); len(noCase) > 0 || len(noRoute) > 0 {
		t.Fatalf("routes without an isolation case: %v; cases without a route: %v", noCase, noRoute)
	}
	e.GET("/contacts/:id/notes/", func(echo.Context) error { return nil })
	if noCase, _ := uncoveredRoutes(e, cases); !slices.Equal(noCase, []string{"GET /contacts/:id/notes/"}) {
		t.Fatalf("a new route was not reported: %v", noCase)
	}
}

// TestIsolation_EveryRoute walks every route with tenant B's key and tenant A's ids.
func TestIsolation_EveryRoute(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	tidA, keyA := te.newTenant("Tenant A")
	_, keyB := te.newTenant("Tenant B")

	// Tenant A: two bots (through tgemu), contacts and webhook events from real webhook
	// deliveries, processed into contacts and inbound messages, a queued message, two
	// broadcasts (one cancelled).
	botA, infoA := te.newBot(keyA, "A support")
	botA2, infoA2 := te.newBot(keyA, "A sales")
	deliver := func(botID uuid.UUID, secret string, updateID, userID int64, firstName, text string) {
		t.Helper()
		req := request(t, http.MethodPost, "/telegram/v1/webhooks/"+botID.String()+"/", "", map[string]any{
			"update_id": updateID,
			"message": map[string]any{"message_id": updateID, "date": time.Now().Unix(), "text": text,
				"chat": map[string]any{"id": userID, "type": "private", "first_name": firstName},
				"from": map[string]any{"id": userID, "is_bot": false, "first_name": firstName}},
		})
		req.Header.Set(telegram.SecretHeader, secret)
		mustStatus(t, te.serve(req), http.StatusOK)
	}
	secretA, secretA2 := te.emu.WebhookInfo(infoA.ID).SecretToken, te.emu.WebhookInfo(infoA2.ID).SecretToken
	deliver(botA.BotAppID, secretA, 501, 7001, "AliceOfTenantA", "hello from Alice")
	deliver(botA.BotAppID, secretA, 502, 7002, "AlanOfTenantA", "hello from Alan")
	deliver(botA2.BotAppID, secretA2, 503, 7003, "AgnesOfTenantA", "hello from Agnes")

	botB, infoB := te.newBot(keyB, "B bot")
	secretB := te.emu.WebhookInfo(infoB.ID).SecretToken
	deliver(botB.BotAppID, secretB, 601, 8001, "BobOfTenantB", "hello from Bob")
	if _, err := te.tg.ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}

	var csA listPage[contactResponse]
	te.do(http.MethodGet, "/contacts/?bot_app_id="+botA.BotAppID.String(), keyA, nil).decode(t, &csA)
	var csB listPage[contactResponse]
	te.do(http.MethodGet, "/contacts/", keyB, nil).decode(t, &csB)
	if len(csA.Items) != 2 || len(csB.Items) != 1 {
		t.Fatalf("contacts: A has %d of bot 1, B has %d", len(csA.Items), len(csB.Items))
	}
	ids := isoIDs{Bot: botA.BotAppID, Bot2: botA2.BotAppID, Contact: csA.Items[0].ID, Contact2: csA.Items[1].ID,
		OwnBot: botB.BotAppID, OwnContact: csB.Items[0].ID}

	r := te.do(http.MethodPost, "/messages/", keyA, map[string]any{"bot_app_id": ids.Bot, "contact_id": ids.Contact, "text": "A's private words"})
	mustStatus(t, r, http.StatusAccepted)
	var m messageResponse
	r.decode(t, &m)
	ids.Message = m.ID
	if err := te.db.NewSelect().Table("messages").Column("id").Where("tenant_id = ?", tidA).
		Where("direction = 'inbound'").Limit(1).Scan(ctx, &ids.InboundMessage); err != nil {
		t.Fatal(err)
	}
	fx := &isoFixture{botToken: infoA.Token, ownSecret: secretB, cursors: map[string]string{}}
	_, keyAIdentity, err := te.tenants.AuthenticateKey(ctx, keyA)
	if err != nil {
		t.Fatal(err)
	}
	ids.APIKey = keyAIdentity.ID
	r = te.do(http.MethodPost, "/api-keys/", keyA, map[string]any{"name": "A's ci key", "scopes": []string{"read"}})
	mustStatus(t, r, http.StatusCreated)
	// A's reply templates: an edited welcome, a tenant-defined /status, and a held lock (the
	// snapshot shows that none of B's template requests touched them).
	mustStatus(t, te.do(http.MethodPut, "/telegram/v1/bots/"+ids.Bot.String()+"/templates/welcome/", keyA, map[string]any{"text": "A's welcome {first_name}"}), http.StatusOK)
	mustStatus(t, te.do(http.MethodPut, "/telegram/v1/bots/"+ids.Bot2.String()+"/templates/status/", keyA, map[string]any{"text": "A's status", "command": "status"}), http.StatusCreated)
	mustStatus(t, te.do(http.MethodPost, "/telegram/v1/bots/"+ids.Bot.String()+"/templates/welcome/lock/", keyA, nil), http.StatusOK)
	mustStatus(t, te.do(http.MethodPost, "/topics/", keyA, map[string]any{"name": "a-only"}), http.StatusCreated)
	mustStatus(t, te.do(http.MethodPut, "/contacts/"+ids.Contact.String()+"/topics/", keyA, map[string]any{"a-only": false}), http.StatusOK)
	// A's pending verification code for external_id "a-acct" (B's verify must not see it).
	if _, err := te.db.NewRaw(`INSERT INTO verification_codes (tenant_id, external_id, bot_id, contact_id, code_hash, expires_at)
		VALUES (?, 'a-acct', ?, ?, decode('00', 'hex'), now() + interval '1 hour')`, tidA, ids.Bot, ids.Contact).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	fx.broadcastFor = func(bot *uuid.UUID, recipients ...uuid.UUID) map[string]any {
		b := map[string]any{"name": "A's spring sale", "platform": "TELEGRAM", "message_text": "A's offer", "recipients": recipients}
		if bot != nil {
			b["bot_app_id"] = *bot
		}
		return b
	}
	var bc broadcastResponse
	r = te.do(http.MethodPost, "/broadcast/", keyA, fx.broadcastFor(&ids.Bot, ids.Contact, ids.Contact2))
	mustStatus(t, r, http.StatusAccepted)
	r.decode(t, &bc)
	ids.Broadcast = bc.ID
	r = te.do(http.MethodPost, "/broadcast/", keyA, fx.broadcastFor(&ids.Bot, ids.Contact))
	mustStatus(t, r, http.StatusAccepted)
	r.decode(t, &bc)
	mustStatus(t, te.do(http.MethodPost, "/broadcast/"+bc.ID.String()+"/cancel/", keyA, nil), http.StatusOK)

	// A's webhook endpoints (event callbacks; a public address that is never called: no
	// delivery loop runs here) and one delivery.
	for _, d := range []string{"A's hook", "A's second hook"} {
		r = te.do(http.MethodPost, "/webhook-endpoints/", keyA, map[string]any{"url": "https://8.8.8.8/hooks/a", "events": []string{"*"}, "description": d})
		mustStatus(t, r, http.StatusCreated)
		var ep webhookEndpointResponse
		r.decode(t, &ep)
		ids.WebhookEndpoint = ep.ID
	}
	if err := te.tg.Callbacks().Emit(ctx, te.db, tidA, callbacks.EventMessageReceived, map[string]any{"text": "A's private words"}); err != nil {
		t.Fatal(err)
	}
	if err := te.db.NewSelect().Table("webhook_deliveries").Column("id").Where("endpoint_id = ?", ids.WebhookEndpoint).
		Limit(1).Scan(ctx, &ids.WebhookDelivery); err != nil {
		t.Fatal(err)
	}

	// Cursors of A's lists (each of A's lists has two items or more).
	for name, p := range map[string]string{"bots": "/telegram/v1/bots/", "events": "/telegram/v1/webhook-events/", "contacts": "/contacts/", "broadcasts": "/broadcast/", "api-keys": "/api-keys/",
		"webhook-endpoints": "/webhook-endpoints/"} {
		var pg listPage[json.RawMessage]
		te.do(http.MethodGet, p+"?limit=1", keyA, nil).decode(t, &pg)
		if pg.NextCursor == "" {
			t.Fatalf("%s: A's list has no second page", name)
		}
		fx.cursors[name] = pg.NextCursor
	}

	// What of A's must never reach B: every id of A's, names and texts.
	aSecrets := []string{tidA.String(), botA.BotAppID.String(), botA2.BotAppID.String(), infoA.Username, infoA2.Username,
		"AliceOfTenantA", "AlanOfTenantA", "AgnesOfTenantA", "A's private words", "A's offer", "A support", "A sales",
		ids.Contact.String(), ids.Contact2.String(), ids.Message.String(), ids.InboundMessage.String(), ids.Broadcast.String(), bc.ID.String(),
		ids.APIKey.String(), "A's ci key", keyA[:9], "A's hook", ids.WebhookEndpoint.String(), ids.WebhookDelivery.String()}
	for _, c := range csA.Items {
		aSecrets = append(aSecrets, c.ID.String())
	}

	aViews := func() map[string]string {
		views := map[string]string{}
		for _, p := range []string{
			"/telegram/v1/bots/", "/telegram/v1/bots/" + ids.Bot.String() + "/", "/telegram/v1/bots/" + ids.Bot2.String() + "/",
			"/telegram/v1/webhook-events/", "/contacts/", "/contacts/" + ids.Contact.String() + "/", "/contacts/" + ids.Contact2.String() + "/",
			"/messages/" + ids.Message.String() + "/", "/messages/" + ids.InboundMessage.String() + "/",
			"/broadcast/", "/broadcast/" + ids.Broadcast.String() + "/",
			"/api-keys/", "/api-keys/" + ids.APIKey.String() + "/",
			"/webhook-endpoints/", "/webhook-endpoints/" + ids.WebhookEndpoint.String() + "/deliveries/",
		} {
			r := te.do(http.MethodGet, p, keyA, nil)
			mustStatus(t, r, http.StatusOK)
			// last_used_at moves (once a minute) with the very requests that read it.
			views["GET "+p] = lastUsedRe.ReplaceAllString(string(r.Body), `"last_used_at":"<t>"`)
		}
		for _, id := range []int64{infoA.ID, infoA2.ID} {
			wi := te.emu.WebhookInfo(id)
			views[fmt.Sprintf("tgemu bot %d", id)] = fmt.Sprintf("url=%s secret=%s sent=%d commands=%v", wi.URL, wi.SecretToken, te.emu.SentCount(id), te.emu.Commands(id))
		}
		return views
	}
	beforeDB, beforeRedis, beforeA := snapshotDB(t, te), snapshotRedis(t, te), aViews()

	cases := isolationCases()
	noCase, noRoute := uncoveredRoutes(te.e, cases)
	for _, k := range noCase {
		t.Errorf("route %s has no case in isolationCases: say how to call it with another tenant's ids", k)
	}
	for _, k := range noRoute {
		t.Errorf("isolationCases has %s, which the router lacks", k)
	}
	walked := 0
	for _, route := range routeKeys(te.e) {
		c, ok := cases[route]
		if !ok || c.reqs == nil {
			continue
		}
		method := strings.Fields(route)[0]
		rnd := ids.swapped()
		real, random := c.reqs(ids, fx), c.reqs(rnd, fx)
		for i, rq := range real {
			walked++
			rq.method = method
			got := te.isoDo(rq, keyB)
			desc := fmt.Sprintf("%s [%s]", route, rq.name)
			if got.Code != rq.want {
				t.Errorf("%s: status %d, want %d: %s", desc, got.Code, rq.want, got.Body)
				continue
			}
			if rq.code != "" {
				if code := got.errorCode(t); code != rq.code {
					t.Errorf("%s: code %s, want %s: %s", desc, code, rq.code, got.Body)
				}
			}
			for _, s := range aSecrets {
				if s != "" && strings.Contains(string(got.Body), s) && !requestNames(rq, s) {
					t.Errorf("%s: the answer shows A's %q: %s", desc, s, got.Body)
				}
			}
			if c.exempt != "" {
				continue
			}
			// The same request with random ids in place of A's must answer the same.
			rr := random[i]
			rr.method = method
			a, b := normalizeAnswer(got, ids.labels()), normalizeAnswer(te.isoDo(rr, keyB), rnd.labels())
			if a != b {
				t.Errorf("%s: A's ids and random ids answer differently:\n  A's:    %s\n  random: %s", desc, a, b)
			}
		}
	}
	t.Logf("walked %d routes with %d requests; compared %d tables and %d Redis keys", len(routeKeys(te.e)), walked, len(beforeDB), len(beforeRedis))

	afterDB, afterRedis, afterA := snapshotDB(t, te), snapshotRedis(t, te), aViews()
	for k, v := range beforeDB {
		if afterDB[k] != v {
			t.Errorf("PostgreSQL table %s changed: %s -> %s", k, v, afterDB[k])
		}
	}
	if diff := diffMaps(beforeRedis, afterRedis); diff != "" {
		t.Errorf("Redis changed:\n%s", diff)
	}
	if diff := diffMaps(beforeA, afterA); diff != "" {
		t.Errorf("what tenant A sees changed:\n%s", diff)
	}
	te.assertNotLogged(keyA, keyB, infoA.Token, secretA, secretB)
}

// lastUsedRe matches an API key's last_used_at in a JSON answer.
var lastUsedRe = regexp.MustCompile(`"last_used_at":("[^"]*"|null)`)

// isoDo serves rq with key as the Bearer token.
func (te *testEnv) isoDo(rq isoRequest, key string) response {
	te.t.Helper()
	p := rq.path
	if len(rq.query) > 0 {
		p += "?" + rq.query.Encode()
	}
	req := request(te.t, rq.method, p, key, rq.body)
	for k, v := range rq.header {
		req.Header.Set(k, v)
	}
	return te.serve(req)
}

// requestNames reports whether s is something the request itself sent (an id B already
// knows and an error may echo, like the unknown recipients of a broadcast).
func requestNames(rq isoRequest, s string) bool {
	raw, _ := json.Marshal(rq.body)
	return strings.Contains(rq.path, s) || strings.Contains(rq.query.Encode(), s) || strings.Contains(string(raw), s)
}

// normalizeAnswer is r's status and body with the request id dropped and the ids of labels
// replaced by their labels, so that answers to different ids can be compared.
func normalizeAnswer(r response, labels map[string]string) string {
	body := string(r.Body)
	var env errorBody
	if json.Unmarshal(r.Body, &env) == nil && env.Error.Code != "" {
		env.Error.RequestID = ""
		raw, _ := json.Marshal(env)
		body = string(raw)
	}
	for id, label := range labels {
		body = strings.ReplaceAll(body, id, label)
	}
	return fmt.Sprintf("%d %s", r.Code, body)
}

// snapshotDB returns, for every table of the schema, its row count and a digest of all its
// rows (whatever the tenant): requests of the walk must change no row anywhere.
func snapshotDB(t *testing.T, te *testEnv) map[string]string {
	t.Helper()
	ctx := context.Background()
	var tables []string
	if err := te.db.NewRaw("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'bun_%' ORDER BY 1").Scan(ctx, &tables); err != nil {
		t.Fatal(err)
	}
	if len(tables) < 8 {
		t.Fatalf("only %d tables: %v", len(tables), tables)
	}
	out := map[string]string{}
	for _, tb := range tables {
		var n int
		var digest string
		// Rows as JSON without api_keys.last_used_at, which a request may write (once a
		// minute per key) without changing anything of a tenant's.
		err := te.db.NewRaw("SELECT count(*), coalesce(md5(string_agg((to_jsonb(t) - 'last_used_at')::text, '|' ORDER BY (to_jsonb(t) - 'last_used_at')::text)), '') FROM ? AS t", bun.Ident(tb)).Scan(ctx, &n, &digest)
		if err != nil {
			t.Fatal(err)
		}
		out[tb] = fmt.Sprintf("%d rows, md5 %s", n, digest)
	}
	return out
}

// snapshotRedis returns every key of the test's Redis database with its type and content.
func snapshotRedis(t *testing.T, te *testEnv) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := te.rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys {
		typ := te.rdb.Type(ctx, k).Val()
		var v any
		switch typ {
		case "string":
			v = te.rdb.Get(ctx, k).Val()
		case "list":
			v = te.rdb.LRange(ctx, k, 0, -1).Val()
		case "set":
			m := te.rdb.SMembers(ctx, k).Val()
			sort.Strings(m)
			v = m
		case "zset":
			v = te.rdb.ZRangeWithScores(ctx, k, 0, -1).Val()
		case "hash":
			v = te.rdb.HGetAll(ctx, k).Val()
		}
		out[k] = fmt.Sprintf("%s %v", typ, v)
	}
	return out
}

// diffMaps describes the keys of a and b whose values differ ("" when none).
func diffMaps(a, b map[string]string) string {
	var lines []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			lines = append(lines, "  removed "+k)
		} else if w != v {
			lines = append(lines, fmt.Sprintf("  changed %s: %.300s -> %.300s", k, v, w))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			lines = append(lines, "  added "+k)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
