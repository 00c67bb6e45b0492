package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/broadcast"
)

// routes registers every route. Paths are canonical: resources end with "/", the three
// operational endpoints do not; canonicalPath (a Pre middleware) rewrites the other form,
// so both work. api/openapi.yaml lists exactly these paths (TestOpenAPIMatchesRoutes).
//
// Every route also runs the global middleware of New: request id, access log, recover and
// the 1 MiB body limit (8 MiB for POST /broadcast/ and /broadcast/preview-audience/).
func (s *server) routes(e *echo.Echo) {
	tenant, admin := s.tenantRoute, s.adminAuth // tenantRoute: tenantAuth, then the per-key rate limit

	// Operations (no authentication).
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/openapi.yaml", s.openapi)

	// Platform operator (Bearer ADMIN_TOKEN).
	e.POST("/admin/v1/tenants/", s.createTenant, admin)

	// Operator's tools (ADMIN_TOKEN as Bearer, or as the Basic password for browsers; ops.go).
	e.GET("/metrics", s.metricsEndpoint, s.adminAuthBrowser)
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
		e.Add(m, QueuesPath+"*", s.queueUI, s.adminAuthBrowser) // asynqmon: pages, assets, its API
	}

	// Telegram calls this; authenticated by the per-bot secret header inside telegram.Ingest.
	e.POST("/telegram/v1/webhooks/:bot_app_id/", s.webhook)

	// Tenant API (Bearer API key). tenantRoute checks the key's scope: read for GET,
	// write for other methods, admin for /api-keys/ (requireScope, middleware.go).
	e.POST("/telegram/v1/bots/", s.createBot, tenant, s.idempotent)
	e.GET("/telegram/v1/bots/", s.listBots, tenant)
	e.GET("/telegram/v1/bots/:bot_app_id/", s.getBot, tenant)
	e.PUT("/telegram/v1/bots/:bot_app_id/", s.updateBot, tenant)
	e.DELETE("/telegram/v1/bots/:bot_app_id/", s.deleteBot, tenant)
	e.POST("/telegram/v1/bots/:bot_app_id/validate/", s.validateBot, tenant)
	e.POST("/telegram/v1/validate-token/", s.validateToken, tenant)
	e.GET("/telegram/v1/webhook-events/", s.listWebhookEvents, tenant)
	// Health, sync and commands (bot_health.go).
	e.GET("/telegram/v1/bots/:bot_app_id/health/", s.botHealth, tenant)
	e.POST("/telegram/v1/bots/:bot_app_id/sync/", s.syncBot, tenant)
	e.GET("/telegram/v1/bots/:bot_app_id/commands/", s.getBotCommands, tenant)
	e.PUT("/telegram/v1/bots/:bot_app_id/commands/", s.putBotCommands, tenant)
	// Test sends, chat lookups and usage (bot_ops.go).
	e.POST("/telegram/v1/bots/:bot_app_id/test/", s.testSend, tenant)
	e.POST("/telegram/v1/bots/:bot_app_id/lookup-chat/", s.lookupChat, tenant)
	e.GET("/telegram/v1/bots/:bot_app_id/usage/", s.botUsage, tenant)
	// Groups, supergroups and channels the bot belongs to (bot_chats.go).
	e.GET("/telegram/v1/bots/:bot_app_id/chats/", s.listBotChats, tenant)

	// Reply templates of a bot, their history and edit locks (bot_templates.go).
	e.GET("/telegram/v1/bots/:bot_app_id/templates/", s.listTemplates, tenant)
	e.GET("/telegram/v1/bots/:bot_app_id/templates/:key/", s.getTemplate, tenant)
	e.PUT("/telegram/v1/bots/:bot_app_id/templates/:key/", s.putTemplate, tenant)
	e.DELETE("/telegram/v1/bots/:bot_app_id/templates/:key/", s.deleteTemplate, tenant)
	e.GET("/telegram/v1/bots/:bot_app_id/templates/:key/history/", s.templateHistory, tenant)
	e.POST("/telegram/v1/bots/:bot_app_id/templates/:key/rollback/", s.rollbackTemplate, tenant)
	e.POST("/telegram/v1/bots/:bot_app_id/templates/:key/reset/", s.resetTemplate, tenant)
	e.POST("/telegram/v1/bots/:bot_app_id/templates/:key/lock/", s.lockTemplate, tenant)
	e.DELETE("/telegram/v1/bots/:bot_app_id/templates/:key/lock/", s.unlockTemplate, tenant)
	e.POST("/telegram/v1/bots/:bot_app_id/templates/:key/test/", s.testTemplate, tenant)

	e.GET("/contacts/", s.listContacts, tenant)
	e.GET("/contacts/:id/", s.getContact, tenant)
	e.PATCH("/contacts/:id/", s.patchContact, tenant)
	e.DELETE("/contacts/:id/", s.deleteContact, tenant)  // right to be forgotten: contacts.Erase
	e.GET("/contacts/export/", s.exportContacts, tenant) // contact_csv.go
	e.POST("/contacts/import/", s.importContacts, tenant, bodyLimit(ContactImportBodyLimit, nil))
	e.POST("/contacts/bulk-tags/", s.bulkTags, tenant)
	e.GET("/contacts/:id/topics/", s.getContactTopics, tenant) // topics.go
	e.PUT("/contacts/:id/topics/", s.putContactTopics, tenant)
	e.GET("/topics/", s.listTopics, tenant)
	e.POST("/topics/", s.createTopic, tenant, s.idempotent)
	e.DELETE("/topics/:name/", s.deleteTopic, tenant)
	// Account linking (linking.go).
	e.POST("/contacts/link-tokens/", s.createLinkToken, tenant, s.idempotentSealed)
	e.POST("/contacts/verification-codes/", s.createVerificationCode, tenant, s.idempotent)
	e.POST("/contacts/verify/", s.verifyCode, tenant)
	// Team inbox (inbox.go).
	e.GET("/contacts/:id/messages/", s.listContactMessages, tenant)
	e.POST("/contacts/:id/messages/", s.replyContact, tenant, s.idempotent) // Idempotency-Key
	e.GET("/contacts/:id/messages/:mid/file/", s.messageFile, tenant)
	e.GET("/conversations/", s.listConversations, tenant)
	e.POST("/conversations/:contact_id/read/", s.conversationAction(readConversation), tenant)
	e.POST("/conversations/:contact_id/assign/", s.conversationAction(assignConversation), tenant)
	e.POST("/conversations/:contact_id/close/", s.conversationAction(closeConversation), tenant)

	e.POST("/messages/", s.createMessage, tenant, s.idempotent) // Idempotency-Key: idempotency.go
	e.GET("/messages/:id/", s.getMessage, tenant)

	e.POST("/broadcast/", s.createBroadcast, tenant, bodyLimit(BroadcastBodyLimit, nil), s.idempotent)
	e.GET("/broadcast/", s.listBroadcasts, tenant)
	e.GET("/broadcast/:id/", s.getBroadcast, tenant)
	e.POST("/broadcast/:id/cancel/", s.cancelBroadcast, tenant)
	// Lifecycle (broadcast_control.go).
	e.PUT("/broadcast/:id/", s.updateBroadcast, tenant, bodyLimit(BroadcastBodyLimit, nil))
	e.POST("/broadcast/:id/send/", s.broadcastAction((*broadcast.Service).Send), tenant)
	e.POST("/broadcast/:id/pause/", s.broadcastAction((*broadcast.Service).TenantPause), tenant)
	e.POST("/broadcast/:id/resume/", s.broadcastAction((*broadcast.Service).Resume), tenant)
	e.POST("/broadcast/:id/retry-failed/", s.broadcastAction((*broadcast.Service).RetryFailed), tenant)
	e.POST("/broadcast/preview-audience/", s.previewAudience, tenant, bodyLimit(BroadcastBodyLimit, nil))
	e.GET("/broadcast/:id/recipients/", s.listBroadcastRecipients, tenant)
	// Canonical with the trailing slash like every resource: canonicalPath turns the
	// documented /broadcast/{id}/recipients.csv into this path.
	e.GET("/broadcast/:id/recipients.csv/", s.exportBroadcastRecipients, tenant)

	// Event callbacks: webhook endpoints and their deliveries (webhook_endpoints.go).
	// No Idempotency-Key replay here: the stored answer would hold the signing secret.
	e.POST("/webhook-endpoints/", s.createWebhookEndpoint, tenant, s.idempotentSealed)
	e.GET("/webhook-endpoints/", s.listWebhookEndpoints, tenant)
	e.GET("/webhook-endpoints/:id/", s.getWebhookEndpoint, tenant)
	e.PATCH("/webhook-endpoints/:id/", s.updateWebhookEndpoint, tenant)
	e.PUT("/webhook-endpoints/:id/", s.updateWebhookEndpoint, tenant)
	e.DELETE("/webhook-endpoints/:id/", s.deleteWebhookEndpoint, tenant)
	e.POST("/webhook-endpoints/:id/rotate-secret/", s.rotateWebhookSecret, tenant)
	e.GET("/webhook-endpoints/:id/deliveries/", s.listWebhookDeliveries, tenant)
	e.POST("/webhook-endpoints/:id/deliveries/:delivery_id/retry/", s.retryWebhookDelivery, tenant)

	// The tenant's API keys (scope admin; apikeys.go).
	e.GET("/api-keys/", s.listAPIKeys, tenant)
	e.POST("/api-keys/", s.createAPIKey, tenant, s.idempotentSealed)
	e.GET("/api-keys/:id/", s.getAPIKey, tenant)
	e.DELETE("/api-keys/:id/", s.revokeAPIKey, tenant)
}
