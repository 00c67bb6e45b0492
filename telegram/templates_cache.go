package telegram

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
)

// templateCache is the in-process cache of the bots' edited reply templates, read by the
// event processors so that a reply costs no query per update: the templates of a batch's bots
// that are not cached are loaded in one query (templatesFor).
//
// Freshness is the bot cache's (botcache.go): every template edit calls InvalidateBot after
// its commit, and whatever drops a bot from the bot cache (this process at once, the others
// through Redis pub/sub) drops its templates too (newBotCache's onDrop). Entries live BotCacheTTL
// while the bot cache is subscribed and BotCacheUnsubscribedTTL otherwise; a load that raced
// with an invalidation is not stored (epoch).
type templateCache struct {
	// now is the clock of edit locks (SetTemplateClock); nil means time.Now.
	now func() time.Time

	mu      sync.RWMutex
	entries map[uuid.UUID]templateEntry
	epoch   uint64
}

type templateEntry struct {
	set      *botTemplates
	loadedAt time.Time
}

// botTemplates are the edited templates of one bot (version > 0).
type botTemplates struct {
	byKey     map[string]*compiledTemplate
	byCommand map[string]*compiledTemplate // tenant-defined keys
}

// compiledTemplate is a stored template parsed for rendering.
type compiledTemplate struct {
	key  string
	mt   MessageTemplate
	vars map[string]string
}

func newTemplateCache() *templateCache {
	return &templateCache{entries: map[uuid.UUID]templateEntry{}}
}

// drop forgets the templates of bot id (all bots for uuid.Nil).
func (c *templateCache) drop(id uuid.UUID) {
	c.mu.Lock()
	if id == uuid.Nil {
		clear(c.entries)
	} else {
		delete(c.entries, id)
	}
	c.epoch++
	c.mu.Unlock()
}

// templatesFor returns the templates of the bots of plans' command messages, from the cache
// or, for those not cached, from one query on idb. Bots without edited templates map to an
// empty set (cached too).
func (s *Service) templatesFor(ctx context.Context, idb bun.IDB, plans []*eventPlan) (map[uuid.UUID]*botTemplates, error) {
	c := s.tpl
	ttl := s.in.bots.TTL()
	out := map[uuid.UUID]*botTemplates{}
	var missing []uuid.UUID
	c.mu.RLock()
	epoch := c.epoch
	for _, p := range plans {
		if p.kind != planMessage || !strings.HasPrefix(p.msg.Text, "/") {
			continue
		}
		id := p.ev.BotID
		if _, seen := out[id]; seen {
			continue
		}
		if e, ok := c.entries[id]; ok && time.Since(e.loadedAt) < ttl {
			out[id] = e.set
			continue
		}
		out[id] = nil
		missing = append(missing, id)
	}
	c.mu.RUnlock()
	if len(missing) == 0 {
		return out, nil
	}
	started := time.Now()
	var rows []templateRow
	err := idb.NewSelect().Model(&rows).Column("bot_id", "key", "command", "text", "parse_mode", "variables").
		Where("bot_id IN (?)", bun.List(missing)).Where("version > 0").Scan(ctx)
	if err != nil && !database.IsNoRows(err) {
		return nil, apperr.Classify(fmt.Errorf("load reply templates: %w", err))
	}
	for _, id := range missing {
		out[id] = &botTemplates{byKey: map[string]*compiledTemplate{}, byCommand: map[string]*compiledTemplate{}}
	}
	for _, r := range rows {
		mt, err := compileTemplate(r.Text, r.ParseMode, r.Variables)
		if err != nil { // checked when saved; a row that no longer parses falls back to the default
			s.log.WarnContext(ctx, "telegram: stored reply template does not parse; using the default", "bot_app_id", r.BotID.String(), "key", r.Key, "error", err)
			continue
		}
		ct := &compiledTemplate{key: r.Key, mt: mt, vars: r.Variables}
		set := out[r.BotID]
		set.byKey[r.Key] = ct
		if r.Command != nil && !isBuiltinTemplate(r.Key) {
			set.byCommand[*r.Command] = ct
		}
	}
	c.mu.Lock()
	if c.epoch == epoch {
		if len(c.entries) >= botCacheMaxEntries {
			clear(c.entries)
		}
		for _, id := range missing {
			c.entries[id] = templateEntry{set: out[id], loadedAt: started}
		}
	}
	c.mu.Unlock()
	return out, nil
}

// commandReply returns the reply to command cmd (lower-cased, without "/") from contact c of
// plan p's bot, and its parse mode: the bot's template of the command (welcome for /start,
// help, stop, a tenant-defined key bound to cmd, else unknown_command) rendered for the
// contact (values escaped for the parse mode), or the built-in default when the key was never
// edited or the rendered text cannot be sent (empty, unparsable, too long: logged). "" means
// no reply.
func (s *Service) commandReply(p *eventPlan, c *contacts.Contact, cmd string, set *botTemplates) (text, parseMode string) {
	key := ""
	switch cmd {
	case "start":
		key = TemplateWelcome
	case "help":
		key = TemplateHelp
	case "stop":
		key = TemplateStop
	}
	var t *compiledTemplate
	if set != nil {
		if key != "" {
			t = set.byKey[key]
		} else if t = set.byCommand[cmd]; t == nil {
			t = set.byKey[TemplateUnknownCommand]
		}
	}
	if t != nil {
		if text, parseMode, ok := s.renderReply(p, c, t); ok {
			return text, parseMode
		}
	}
	switch key {
	case TemplateWelcome:
		firstName := ""
		if p.msg.From != nil {
			firstName = p.msg.From.FirstName
		}
		return StartReplyText(firstName, p.bot.Name), ""
	case TemplateHelp:
		return HelpReplyText(), ""
	case TemplateStop:
		return StopReplyText, ""
	}
	return "", ""
}

// renderReply renders template t for contact c of plan p (values escaped for its parse mode).
// ok is false when the rendered text cannot be sent (logged): the caller falls back to the
// built-in default. An empty template renders "" with ok true (no reply).
func (s *Service) renderReply(p *eventPlan, c *contacts.Contact, t *compiledTemplate) (text, parseMode string, ok bool) {
	if strings.TrimSpace(t.mt.Text) == "" {
		return "", "", true // an empty template (unknown_command reset): no reply
	}
	contact := ContactLookup(c.FirstName, c.LastName, c.TelegramUsername, c.Attributes)
	tl := templateLookup(p.bot.Name, t.vars)
	out, reason := t.mt.RenderFor(func(name string) (string, bool) {
		if name == VarExternalID {
			return c.ExternalID, c.ExternalID != ""
		}
		if v, ok := contact(name); ok {
			return v, true
		}
		return tl(name)
	})
	if reason == "" {
		return out.Text, out.ParseMode, true
	}
	s.log.Warn("telegram: reply template cannot be sent to this contact; using the default", "bot_app_id", p.ev.BotID.String(),
		"key", t.key, "chat_id", p.key.chatID, "reason", reason)
	return "", "", false
}
