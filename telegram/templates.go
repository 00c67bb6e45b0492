package telegram

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/textvars"
	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/tenant"
)

// Built-in reply template keys (issue 8, "Commands and reply templates"). Each exists on
// every bot; until it is edited its built-in default applies.
const (
	// TemplateWelcome answers /start (default: StartReplyText).
	TemplateWelcome = "welcome"
	// TemplateHelp answers /help (default: HelpReplyText).
	TemplateHelp = "help"
	// TemplateStop answers /stop (default: StopReplyText).
	TemplateStop = "stop"
	// TemplateUnknownCommand answers a command addressed to the bot that no template is
	// bound to (default: empty, no reply).
	TemplateUnknownCommand = "unknown_command"
	// TemplateLinkSuccess answers a link token that linked the contact (/start <token>,
	// /link <token>; linking.go). Default: defaultLinkSuccessText.
	TemplateLinkSuccess = "link_success"
	// TemplateLinkFailed answers an expired, used or unknown link token. Default:
	// defaultLinkFailedText.
	TemplateLinkFailed = "link_failed"
	// TemplateLinkStatus answers /status with the contact's link state (use {external_id}).
	// Default: defaultLinkStatusText.
	TemplateLinkStatus = "link_status"
)

// BuiltinTemplateKeys are the built-in keys, in the order lists show them.
var BuiltinTemplateKeys = []string{TemplateWelcome, TemplateHelp, TemplateStop, TemplateUnknownCommand,
	TemplateLinkSuccess, TemplateLinkFailed, TemplateLinkStatus}

// builtinCommands binds built-in keys to their command ("" for unknown_command and the link
// keys, which answer outcomes rather than one command: linking.go).
var builtinCommands = map[string]string{TemplateWelcome: "start", TemplateHelp: "help", TemplateStop: "stop", TemplateUnknownCommand: "",
	TemplateLinkSuccess: "", TemplateLinkFailed: "", TemplateLinkStatus: ""}

// Change types of a template version.
const (
	ChangeUpdate   = "update"   // PUT .../templates/{key}/
	ChangeRollback = "rollback" // a copy of an earlier version
	ChangeReset    = "reset"    // the built-in default
)

// Template limits and settings.
const (
	// TemplateLockTTL is how long an edit lock is held after it is taken (or taken again by
	// its holder, which extends it).
	TemplateLockTTL = 10 * time.Minute
	// MaxTemplateVariables is the most variables one template may declare.
	MaxTemplateVariables = 20
	// MaxTemplateVariableLength is the longest declared variable value, in characters.
	MaxTemplateVariableLength = 256
	// MaxTemplatesPerBot is the most tenant-defined keys of one bot.
	MaxTemplatesPerBot = 100
	// VarBotName is the variable every reply template may use: the bot's name as the tenant
	// registered it.
	VarBotName = "bot_name"
	// VarExternalID is the variable every reply template may use: the contact's external_id
	// (missing when the contact is not linked, so "{external_id|not linked}" shows the default).
	VarExternalID = "external_id"
)

// defaultWelcomeText is StartReplyText as a template.
const defaultWelcomeText = "Hi {first_name|there}! 👋 Welcome to {bot_name}. Send /help to see what I can do."

// Errors of reply templates.
var (
	ErrTemplateNotFound = apperr.NotFound("template_not_found", "reply template not found")
	// ErrTemplateLocked is an edit while another API key holds the key's edit lock (409);
	// details name the holder and expires_at.
	ErrTemplateLocked = apperr.Conflict("template_locked", "the template is locked by another API key")
	// ErrCommandTaken is a tenant-defined key bound to a command another key of the bot has.
	ErrCommandTaken = apperr.Conflict("command_taken", "another template of this bot is bound to this command")
	// ErrBuiltinTemplate is DELETE of a built-in key (422).
	ErrBuiltinTemplate = apperr.Invalid("builtin_template", "built-in templates cannot be deleted; reset them instead").WithDetails(map[string]any{"field": "key"})
	// ErrNoDefaultTemplate is a reset of a tenant-defined key (422): it has no built-in default.
	ErrNoDefaultTemplate = apperr.Invalid("template_has_no_default", "only built-in templates (welcome, help, stop, unknown_command, link_success, link_failed, link_status) can be reset").WithDetails(map[string]any{"field": "key"})
)

// templateKeyRe is a template key and a command: Telegram's command rule, 1-32 characters
// of a-z, 0-9 and _ (core.telegram.org/bots/api#botcommand).
var templateKeyRe = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

// templateVarRe is the name of a declared variable.
var templateVarRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

// ReplyTemplate is the current state of one key of a bot.
type ReplyTemplate struct {
	BotID uuid.UUID
	Key   string
	// Command is the command the key answers, without "/" ("start" for welcome; "" for
	// unknown_command).
	Command string
	// BuiltIn marks welcome, help, stop and unknown_command.
	BuiltIn bool
	// Default is true while a built-in key was never edited (Version 0): Text is its default.
	Default bool
	// Version is the current version, 0 for a built-in never edited.
	Version   int
	Text      string
	ParseMode string
	// Variables are the template's declared variables: name -> value, usable as {name}.
	Variables map[string]string
	// Editor is the name of the API key of the last edit ("" for a default).
	Editor    string
	UpdatedAt time.Time
	// Lock is the edit lock while one is held, nil otherwise.
	Lock *TemplateLock
}

// TemplateVersion is one version of a template (its history).
type TemplateVersion struct {
	Version    int
	Command    string
	Text       string
	ParseMode  string
	Variables  map[string]string
	Editor     string
	ChangeType string
	CreatedAt  time.Time
}

// TemplateLock is an edit lock: held by the API key HolderKeyID (named Holder) from
// AcquiredAt until ExpiresAt.
type TemplateLock struct {
	HolderKeyID uuid.UUID
	Holder      string
	AcquiredAt  time.Time
	ExpiresAt   time.Time
}

// TemplateEdit is the body of PUT .../templates/{key}/.
type TemplateEdit struct {
	// Text is the reply, 1-4096 characters, a template (textvars) that may use first_name,
	// last_name, username, attributes.KEY, bot_name and the declared Variables.
	Text string
	// ParseMode is "", HTML, MarkdownV2 or Markdown.
	ParseMode string
	// Variables declares the template's own variables, name ([a-z][a-z0-9_]{0,31}) -> value
	// (0-256 characters; escaped for ParseMode when rendered). At most 20.
	Variables map[string]string
	// Command binds a tenant-defined key to a command (required for those; must be empty or
	// the fixed command for built-in keys).
	Command string
}

// templateRow is a reply_templates row.
type templateRow struct {
	bun.BaseModel `bun:"table:reply_templates,alias:rt"`

	BotID     uuid.UUID         `bun:",pk,type:uuid"`
	TenantID  uuid.UUID         `bun:",type:uuid,notnull"`
	Key       string            `bun:",pk"`
	Command   *string           `bun:""`
	Version   int               `bun:",notnull"`
	Text      string            `bun:",notnull"`
	ParseMode string            `bun:",notnull"`
	Variables map[string]string `bun:",type:jsonb,notnull"`
	Editor    string            `bun:",notnull"`
	CreatedAt time.Time         `bun:",nullzero,notnull,default:now()"`
	UpdatedAt time.Time         `bun:",nullzero,notnull,default:now()"`
}

// versionRow is a reply_template_versions row.
type versionRow struct {
	bun.BaseModel `bun:"table:reply_template_versions,alias:rv"`

	BotID      uuid.UUID         `bun:",pk,type:uuid"`
	Key        string            `bun:",pk"`
	Version    int               `bun:",pk"`
	Command    *string           `bun:""`
	Text       string            `bun:",notnull"`
	ParseMode  string            `bun:",notnull"`
	Variables  map[string]string `bun:",type:jsonb,notnull"`
	Editor     string            `bun:",notnull"`
	ChangeType string            `bun:",notnull"`
	CreatedAt  time.Time         `bun:",nullzero,notnull"`
}

// lockRow is a reply_template_locks row.
type lockRow struct {
	bun.BaseModel `bun:"table:reply_template_locks,alias:rl"`

	BotID       uuid.UUID `bun:",pk,type:uuid"`
	Key         string    `bun:",pk"`
	HolderKeyID uuid.UUID `bun:",type:uuid,notnull"`
	Holder      string    `bun:",notnull"`
	AcquiredAt  time.Time `bun:",notnull"`
	ExpiresAt   time.Time `bun:",notnull"`
}

// isBuiltinTemplate reports whether key is a built-in key.
func isBuiltinTemplate(key string) bool { return slices.Contains(BuiltinTemplateKeys, key) }

// DefaultTemplateText returns the built-in default of a built-in key as template text
// ("" for unknown_command: no reply), and false for other keys.
func DefaultTemplateText(key string) (string, bool) {
	switch key {
	case TemplateWelcome:
		return defaultWelcomeText, true
	case TemplateHelp:
		return escapeTemplate(HelpReplyText()), true
	case TemplateStop:
		return escapeTemplate(StopReplyText), true
	case TemplateUnknownCommand:
		return "", true
	case TemplateLinkSuccess:
		return defaultLinkSuccessText, true
	case TemplateLinkFailed:
		return defaultLinkFailedText, true
	case TemplateLinkStatus:
		return defaultLinkStatusText, true
	}
	return "", false
}

// escapeTemplate doubles the braces of literal text so that it parses as itself.
func escapeTemplate(s string) string {
	return strings.NewReplacer("{", "{{", "}", "}}").Replace(s)
}

// tplNow is the clock of edit locks: SetTemplateClock's, else the service's (Deps.Now).
func (s *Service) tplNow() time.Time {
	if s.tpl != nil && s.tpl.now != nil {
		return s.tpl.now()
	}
	return s.now()
}

// SetTemplateClock replaces the clock of edit locks (tests; nil restores time.Now).
func (s *Service) SetTemplateClock(now func() time.Time) { s.tpl.now = now }

// checkTemplateKey validates a key from a path: 404 for a key that cannot exist.
func checkTemplateKey(key string) error {
	if !templateKeyRe.MatchString(key) {
		return ErrTemplateNotFound
	}
	return nil
}

// checkTemplateEdit validates e for key and returns the normalised edit (parse_mode in
// Telegram's spelling). Errors are 422 invalid_field (an unknown variable names it in
// details.variable with its position).
func checkTemplateEdit(key string, e TemplateEdit) (TemplateEdit, error) {
	if isBuiltinTemplate(key) {
		if e.Command != "" && e.Command != builtinCommands[key] {
			return e, validate.Field("command", "the built-in key %q is bound to its own command; command must be empty", key)
		}
		e.Command = builtinCommands[key]
	} else {
		e.Command = strings.TrimPrefix(e.Command, "/")
		if e.Command == "" {
			return e, validate.Field("command", "command is required for a tenant-defined key (e.g. \"status\" for /status)")
		}
		if !templateKeyRe.MatchString(e.Command) {
			return e, validate.Field("command", "command must be 1-32 characters of a-z, 0-9 and _")
		}
		if slices.Contains([]string{"start", "help", "stop"}, e.Command) {
			return e, validate.Field("command", "/%s is answered by a built-in key; edit that key instead", e.Command)
		}
	}
	if len(e.Variables) > MaxTemplateVariables {
		return e, validate.Field("variables", "at most %d variables may be declared", MaxTemplateVariables)
	}
	names := []string{VarBotName, VarExternalID}
	for _, name := range slices.Sorted(maps.Keys(e.Variables)) {
		f := "variables." + name
		if !templateVarRe.MatchString(name) {
			return e, validate.Field(f, "variable names are 1-32 characters of a-z, 0-9 and _, starting with a letter")
		}
		if slices.Contains([]string{textvars.VarFirstName, textvars.VarLastName, textvars.VarUsername, VarBotName, VarExternalID, "attributes"}, name) {
			return e, validate.Field(f, "%q is a built-in variable name", name)
		}
		if err := validate.OptionalText(f, e.Variables[name], MaxTemplateVariableLength); err != nil {
			return e, err
		}
		names = append(names, name)
	}
	mt, err := CheckMessage("text", e.Text, e.ParseMode, Content{}, names...)
	if err != nil {
		return e, err
	}
	e.ParseMode = mt.ParseMode
	if e.Variables == nil {
		e.Variables = map[string]string{}
	}
	return e, nil
}

// ListTemplates returns the bot's templates: the four built-in keys (their defaults when
// never edited), then the tenant-defined keys by key. Errors: ErrBotNotFound (404),
// apperr.ErrUnavailable.
func (s *Service) ListTemplates(ctx context.Context, tenantID, botID uuid.UUID) ([]ReplyTemplate, error) {
	if _, err := s.GetBot(ctx, tenantID, botID); err != nil {
		return nil, err
	}
	var rows []templateRow
	if err := s.db.NewSelect().Model(&rows).Where("bot_id = ?", botID).Where("tenant_id = ?", tenantID).OrderExpr("key").Scan(ctx); err != nil && !database.IsNoRows(err) {
		return nil, apperr.Classify(fmt.Errorf("list templates: %w", err))
	}
	locks, err := s.activeLocks(ctx, s.db, botID, "")
	if err != nil {
		return nil, err
	}
	byKey := map[string]*templateRow{}
	for i := range rows {
		byKey[rows[i].Key] = &rows[i]
	}
	var out []ReplyTemplate
	for _, k := range BuiltinTemplateKeys {
		out = append(out, toReplyTemplate(botID, k, byKey[k], locks[k]))
	}
	for i := range rows {
		if !isBuiltinTemplate(rows[i].Key) {
			out = append(out, toReplyTemplate(botID, rows[i].Key, &rows[i], locks[rows[i].Key]))
		}
	}
	return out, nil
}

// toReplyTemplate is the ReplyTemplate of key from its row (nil or version 0: the default).
func toReplyTemplate(botID uuid.UUID, key string, r *templateRow, lock *TemplateLock) ReplyTemplate {
	t := ReplyTemplate{BotID: botID, Key: key, BuiltIn: isBuiltinTemplate(key), Lock: lock, Variables: map[string]string{}}
	if r == nil || r.Version == 0 {
		t.Default = true
		t.Text, _ = DefaultTemplateText(key)
		t.Command = builtinCommands[key]
		if r != nil {
			t.UpdatedAt = r.UpdatedAt
		}
		return t
	}
	t.Version, t.Text, t.ParseMode, t.Editor, t.UpdatedAt = r.Version, r.Text, r.ParseMode, r.Editor, r.UpdatedAt
	if r.Command != nil {
		t.Command = *r.Command
	}
	if r.Variables != nil {
		t.Variables = r.Variables
	}
	return t
}

// GetTemplate returns key of the bot. Errors: ErrBotNotFound, ErrTemplateNotFound (a
// tenant-defined key that does not exist), apperr.ErrUnavailable.
func (s *Service) GetTemplate(ctx context.Context, tenantID, botID uuid.UUID, key string) (ReplyTemplate, error) {
	if _, err := s.GetBot(ctx, tenantID, botID); err != nil {
		return ReplyTemplate{}, err
	}
	if err := checkTemplateKey(key); err != nil {
		return ReplyTemplate{}, err
	}
	return s.getTemplate(ctx, s.db, botID, key)
}

func (s *Service) getTemplate(ctx context.Context, idb bun.IDB, botID uuid.UUID, key string) (ReplyTemplate, error) {
	row, err := templateRowOf(ctx, idb, botID, key, false)
	if err != nil {
		return ReplyTemplate{}, err
	}
	if row == nil && !isBuiltinTemplate(key) {
		return ReplyTemplate{}, ErrTemplateNotFound
	}
	locks, err := s.activeLocks(ctx, idb, botID, key)
	if err != nil {
		return ReplyTemplate{}, err
	}
	return toReplyTemplate(botID, key, row, locks[key]), nil
}

// templateRowOf loads the row of (botID, key), nil when there is none; forUpdate locks it.
func templateRowOf(ctx context.Context, idb bun.IDB, botID uuid.UUID, key string, forUpdate bool) (*templateRow, error) {
	var r templateRow
	q := idb.NewSelect().Model(&r).Where("bot_id = ?", botID).Where("key = ?", key)
	if forUpdate {
		q = q.For("UPDATE")
	}
	if err := q.Scan(ctx); err != nil {
		if database.IsNoRows(err) {
			return nil, nil
		}
		return nil, apperr.Classify(fmt.Errorf("get template: %w", err))
	}
	return &r, nil
}

// activeLocks returns the unexpired locks of the bot (of key only, when key is not "").
func (s *Service) activeLocks(ctx context.Context, idb bun.IDB, botID uuid.UUID, key string) (map[string]*TemplateLock, error) {
	var rows []lockRow
	q := idb.NewSelect().Model(&rows).Where("bot_id = ?", botID).Where("expires_at > ?", s.tplNow())
	if key != "" {
		q = q.Where("key = ?", key)
	}
	if err := q.Scan(ctx); err != nil && !database.IsNoRows(err) {
		return nil, apperr.Classify(fmt.Errorf("get template locks: %w", err))
	}
	out := make(map[string]*TemplateLock, len(rows))
	for _, r := range rows {
		out[r.Key] = &TemplateLock{HolderKeyID: r.HolderKeyID, Holder: r.Holder, AcquiredAt: r.AcquiredAt.UTC(), ExpiresAt: r.ExpiresAt.UTC()}
	}
	return out, nil
}

// lockedError is ErrTemplateLocked naming the holder and the expiry.
func lockedError(key string, l *TemplateLock) error {
	return ErrTemplateLocked.
		WithMessage("the template %q is locked by the API key %q until %s", key, l.Holder, l.ExpiresAt.UTC().Format(time.RFC3339)).
		WithDetails(map[string]any{"key": key, "holder": l.Holder, "acquired_at": l.AcquiredAt.UTC(), "expires_at": l.ExpiresAt.UTC()})
}

// PutTemplate saves a new version of key (change type update) edited by the API key ed and
// returns the template and whether the key was created (a tenant-defined key not seen
// before). Errors: ErrBotNotFound, ErrTemplateNotFound (bad key), 422 invalid_field (see
// checkTemplateEdit), ErrTemplateLocked (another key holds the lock), ErrCommandTaken,
// apperr.ErrUnavailable.
func (s *Service) PutTemplate(ctx context.Context, tenantID, botID uuid.UUID, key string, ed tenant.Key, e TemplateEdit) (ReplyTemplate, bool, error) {
	if _, err := s.GetBot(ctx, tenantID, botID); err != nil {
		return ReplyTemplate{}, false, err
	}
	if err := checkTemplateKey(key); err != nil {
		return ReplyTemplate{}, false, err
	}
	e, err := checkTemplateEdit(key, e)
	if err != nil {
		return ReplyTemplate{}, false, err
	}
	return s.editTemplate(ctx, tenantID, botID, key, ed, true, func(*templateRow) (TemplateEdit, string, error) {
		return e, ChangeUpdate, nil
	})
}

// RollbackTemplate saves a new version of key that copies version (text, parse_mode,
// variables; change type rollback). Errors: as PutTemplate, and 422 invalid_field (field
// version) for a version that does not exist.
func (s *Service) RollbackTemplate(ctx context.Context, tenantID, botID uuid.UUID, key string, ed tenant.Key, version int) (ReplyTemplate, error) {
	if _, err := s.GetBot(ctx, tenantID, botID); err != nil {
		return ReplyTemplate{}, err
	}
	if err := checkTemplateKey(key); err != nil {
		return ReplyTemplate{}, err
	}
	if version < 1 {
		return ReplyTemplate{}, validate.Field("version", "version must be a version of the template's history (1 or more)")
	}
	t, _, err := s.editTemplate(ctx, tenantID, botID, key, ed, false, func(cur *templateRow) (TemplateEdit, string, error) {
		var v versionRow
		err := s.db.NewSelect().Model(&v).Where("bot_id = ?", botID).Where("key = ?", key).Where("version = ?", version).Scan(ctx)
		if database.IsNoRows(err) {
			return TemplateEdit{}, "", validate.Field("version", "the template has no version %d", version)
		}
		if err != nil {
			return TemplateEdit{}, "", apperr.Classify(fmt.Errorf("get template version: %w", err))
		}
		cmd := builtinCommands[key]
		if cur != nil && cur.Command != nil {
			cmd = *cur.Command // the binding stays; only the content rolls back
		}
		return TemplateEdit{Text: v.Text, ParseMode: v.ParseMode, Variables: v.Variables, Command: cmd}, ChangeRollback, nil
	})
	return t, err
}

// ResetTemplate saves a new version of a built-in key with its built-in default (change
// type reset). Errors: as PutTemplate; ErrNoDefaultTemplate (422) for a tenant-defined key
// that exists, ErrTemplateNotFound for one that does not.
func (s *Service) ResetTemplate(ctx context.Context, tenantID, botID uuid.UUID, key string, ed tenant.Key) (ReplyTemplate, error) {
	if _, err := s.GetBot(ctx, tenantID, botID); err != nil {
		return ReplyTemplate{}, err
	}
	if err := checkTemplateKey(key); err != nil {
		return ReplyTemplate{}, err
	}
	def, ok := DefaultTemplateText(key)
	if !ok {
		if _, err := s.getTemplate(ctx, s.db, botID, key); err != nil {
			return ReplyTemplate{}, err
		}
		return ReplyTemplate{}, ErrNoDefaultTemplate
	}
	t, _, err := s.editTemplate(ctx, tenantID, botID, key, ed, false, func(*templateRow) (TemplateEdit, string, error) {
		return TemplateEdit{Text: def, Variables: map[string]string{}, Command: builtinCommands[key]}, ChangeReset, nil
	})
	return t, err
}

// editTemplate runs one edit in a transaction: the lock check, the new version (next) and
// the current row; create allows a tenant-defined key that does not exist yet. After the
// commit every process drops its cached templates of the bot (InvalidateBot).
func (s *Service) editTemplate(ctx context.Context, tenantID, botID uuid.UUID, key string, ed tenant.Key, create bool,
	next func(cur *templateRow) (TemplateEdit, string, error)) (ReplyTemplate, bool, error) {
	var out ReplyTemplate
	created := false
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if isBuiltinTemplate(key) {
			// The placeholder row makes the first edits of a built-in key serialise on its lock.
			if _, err := tx.NewInsert().Model(&templateRow{BotID: botID, TenantID: tenantID, Key: key, Variables: map[string]string{}}).
				On("CONFLICT (bot_id, key) DO NOTHING").Exec(ctx); err != nil {
				return apperr.Classify(fmt.Errorf("insert template: %w", err))
			}
		}
		cur, err := templateRowOf(ctx, tx, botID, key, true)
		if err != nil {
			return err
		}
		if cur == nil && !create {
			return ErrTemplateNotFound
		}
		locks, err := s.activeLocks(ctx, tx, botID, key)
		if err != nil {
			return err
		}
		if l := locks[key]; l != nil && l.HolderKeyID != ed.ID {
			return lockedError(key, l)
		}
		e, change, err := next(cur)
		if err != nil {
			return err
		}
		now := s.tplNow()
		var cmd *string
		if e.Command != "" {
			cmd = &e.Command
		}
		version := 1
		if cur != nil {
			version = cur.Version + 1
		} else {
			var n int64
			if n, err = tx.NewSelect().Model((*templateRow)(nil)).Where("bot_id = ?", botID).
				Where("key NOT IN (?)", bun.List(BuiltinTemplateKeys)).Count(ctx); err != nil {
				return apperr.Classify(fmt.Errorf("count templates: %w", err))
			}
			if n >= MaxTemplatesPerBot {
				return validate.Field("key", "a bot has at most %d tenant-defined templates", MaxTemplatesPerBot)
			}
			created = true
		}
		row := templateRow{BotID: botID, TenantID: tenantID, Key: key, Command: cmd, Version: version, Text: e.Text,
			ParseMode: e.ParseMode, Variables: e.Variables, Editor: ed.Name, CreatedAt: now, UpdatedAt: now}
		if cur != nil {
			row.CreatedAt = cur.CreatedAt
		}
		if _, err := tx.NewInsert().Model(&row).
			On("CONFLICT (bot_id, key) DO UPDATE").
			Set("command = EXCLUDED.command, version = EXCLUDED.version, text = EXCLUDED.text, parse_mode = EXCLUDED.parse_mode").
			Set("variables = EXCLUDED.variables, editor = EXCLUDED.editor, updated_at = EXCLUDED.updated_at").
			Exec(ctx); err != nil {
			if database.IsUniqueViolation(err, "reply_templates_bot_command_uq") {
				return ErrCommandTaken.WithMessage("another template of this bot is bound to /%s", e.Command).
					WithDetails(map[string]any{"field": "command"})
			}
			return apperr.Classify(fmt.Errorf("save template: %w", err))
		}
		v := versionRow{BotID: botID, Key: key, Version: version, Command: cmd, Text: e.Text, ParseMode: e.ParseMode,
			Variables: e.Variables, Editor: ed.Name, ChangeType: change, CreatedAt: now}
		if _, err := tx.NewInsert().Model(&v).Exec(ctx); err != nil {
			return apperr.Classify(fmt.Errorf("save template version: %w", err))
		}
		out, err = s.getTemplate(ctx, tx, botID, key)
		return err
	})
	if err != nil {
		return ReplyTemplate{}, false, err
	}
	s.invalidateBot(ctx, botID)
	return out, created, nil
}

// DeleteTemplate deletes a tenant-defined key, its history and its lock; its command then
// gets the unknown_command reply. Errors: ErrBotNotFound, ErrTemplateNotFound,
// ErrBuiltinTemplate (422), ErrTemplateLocked, apperr.ErrUnavailable.
func (s *Service) DeleteTemplate(ctx context.Context, tenantID, botID uuid.UUID, key string, ed tenant.Key) error {
	if _, err := s.GetBot(ctx, tenantID, botID); err != nil {
		return err
	}
	if err := checkTemplateKey(key); err != nil {
		return err
	}
	if isBuiltinTemplate(key) {
		return ErrBuiltinTemplate
	}
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		cur, err := templateRowOf(ctx, tx, botID, key, true)
		if err != nil {
			return err
		}
		if cur == nil {
			return ErrTemplateNotFound
		}
		locks, err := s.activeLocks(ctx, tx, botID, key)
		if err != nil {
			return err
		}
		if l := locks[key]; l != nil && l.HolderKeyID != ed.ID {
			return lockedError(key, l)
		}
		if _, err := tx.NewDelete().Model((*lockRow)(nil)).Where("bot_id = ?", botID).Where("key = ?", key).Exec(ctx); err != nil {
			return apperr.Classify(fmt.Errorf("delete template lock: %w", err))
		}
		if _, err := tx.NewDelete().Model((*templateRow)(nil)).Where("bot_id = ?", botID).Where("key = ?", key).Exec(ctx); err != nil {
			return apperr.Classify(fmt.Errorf("delete template: %w", err))
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.invalidateBot(ctx, botID)
	return nil
}

// TemplateHistory returns the versions of key, newest first (empty for a built-in key never
// edited). Errors: ErrBotNotFound, ErrTemplateNotFound, apperr.ErrUnavailable.
func (s *Service) TemplateHistory(ctx context.Context, tenantID, botID uuid.UUID, key string) ([]TemplateVersion, error) {
	if _, err := s.GetTemplate(ctx, tenantID, botID, key); err != nil {
		return nil, err
	}
	var rows []versionRow
	if err := s.db.NewSelect().Model(&rows).Where("bot_id = ?", botID).Where("key = ?", key).OrderExpr("version DESC").Scan(ctx); err != nil && !database.IsNoRows(err) {
		return nil, apperr.Classify(fmt.Errorf("template history: %w", err))
	}
	out := make([]TemplateVersion, 0, len(rows))
	for _, r := range rows {
		v := TemplateVersion{Version: r.Version, Text: r.Text, ParseMode: r.ParseMode, Variables: r.Variables, Editor: r.Editor,
			ChangeType: r.ChangeType, CreatedAt: r.CreatedAt.UTC()}
		if r.Command != nil {
			v.Command = *r.Command
		}
		if v.Variables == nil {
			v.Variables = map[string]string{}
		}
		out = append(out, v)
	}
	return out, nil
}

// LockTemplate takes the edit lock of key for the API key ed until now + TemplateLockTTL;
// ed taking it again extends it (acquired_at stays). Errors: ErrBotNotFound,
// ErrTemplateNotFound, ErrTemplateLocked (held by another key), apperr.ErrUnavailable.
func (s *Service) LockTemplate(ctx context.Context, tenantID, botID uuid.UUID, key string, ed tenant.Key) (TemplateLock, error) {
	if _, err := s.GetTemplate(ctx, tenantID, botID, key); err != nil {
		return TemplateLock{}, err
	}
	now := s.tplNow()
	row := lockRow{BotID: botID, Key: key, HolderKeyID: ed.ID, Holder: ed.Name, AcquiredAt: now, ExpiresAt: now.Add(TemplateLockTTL)}
	// Take it when free, expired or ours (then only extended); otherwise nothing is returned.
	err := s.db.NewInsert().Model(&row).
		On("CONFLICT (bot_id, key) DO UPDATE").
		Set("holder_key_id = EXCLUDED.holder_key_id, holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at").
		Set("acquired_at = CASE WHEN rl.holder_key_id = EXCLUDED.holder_key_id AND rl.expires_at > ? THEN rl.acquired_at ELSE EXCLUDED.acquired_at END", now).
		Where("rl.holder_key_id = EXCLUDED.holder_key_id OR rl.expires_at <= ?", now).
		Returning("acquired_at, expires_at").Scan(ctx)
	if database.IsNoRows(err) {
		locks, err := s.activeLocks(ctx, s.db, botID, key)
		if err != nil {
			return TemplateLock{}, err
		}
		if l := locks[key]; l != nil {
			return TemplateLock{}, lockedError(key, l)
		}
		return TemplateLock{}, apperr.ErrUnavailable // released meanwhile: retry
	}
	if err != nil {
		return TemplateLock{}, apperr.Classify(fmt.Errorf("lock template: %w", err))
	}
	return TemplateLock{HolderKeyID: ed.ID, Holder: ed.Name, AcquiredAt: row.AcquiredAt.UTC(), ExpiresAt: row.ExpiresAt.UTC()}, nil
}

// UnlockTemplate releases the edit lock of key. Only its holder may release it, or a key
// with the admin scope (for a holder that is gone); releasing a lock that is not held (or
// expired) succeeds. Errors: ErrBotNotFound, ErrTemplateNotFound, ErrTemplateLocked (held by
// another key and ed is not admin), apperr.ErrUnavailable.
func (s *Service) UnlockTemplate(ctx context.Context, tenantID, botID uuid.UUID, key string, ed tenant.Key) error {
	if _, err := s.GetTemplate(ctx, tenantID, botID, key); err != nil {
		return err
	}
	locks, err := s.activeLocks(ctx, s.db, botID, key)
	if err != nil {
		return err
	}
	l := locks[key]
	if l != nil && l.HolderKeyID != ed.ID && !ed.Allows(tenant.ScopeAdmin) {
		return lockedError(key, l)
	}
	q := s.db.NewDelete().Model((*lockRow)(nil)).Where("bot_id = ?", botID).Where("key = ?", key)
	if l != nil {
		q = q.Where("holder_key_id = ?", l.HolderKeyID)
	}
	if _, err := q.Exec(ctx); err != nil {
		return apperr.Classify(fmt.Errorf("unlock template: %w", err))
	}
	return nil
}

// TemplateTestResult is the answer to a test send.
type TemplateTestResult struct {
	Text      string
	ParseMode string
	Outcome   Outcome
}

// SampleLookup is the textvars.Lookup of a test send: sample contact values (first_name
// "Sample", last_name "User", username "sample_user", attributes.KEY "sample"), the bot's
// name, external_id "sample_account" and the template's declared variables.
func SampleLookup(botName string, vars map[string]string) textvars.Lookup {
	contact := ContactLookup("Sample", "User", "sample_user", nil)
	return func(name string) (string, bool) {
		if name == VarExternalID {
			return "sample_account", true
		}
		if strings.HasPrefix(name, textvars.AttributesPrefix) {
			return "sample", true
		}
		if v, ok := contact(name); ok {
			return v, true
		}
		return templateLookup(botName, vars)(name)
	}
}

// templateLookup resolves bot_name and declared variables.
func templateLookup(botName string, vars map[string]string) textvars.Lookup {
	return func(name string) (string, bool) {
		if name == VarBotName {
			return botName, botName != ""
		}
		v, ok := vars[name]
		return v, ok && v != ""
	}
}

// TestTemplate renders key with sample values (SampleLookup) and sends it to chatID now
// through the bot's normal send path (Send: limits, daily limit, classification). allow
// (nil: none) is called once every check passed, just before the send; its error is returned
// as is and nothing is sent (the caller's quota of test sends). The Outcome tells what
// Telegram answered. Errors: ErrBotNotFound, ErrTemplateNotFound, 422 invalid_field (field
// chat_id when 0; field key when the template's text is empty, as unknown_command's
// default), apperr.ErrUnavailable.
func (s *Service) TestTemplate(ctx context.Context, tenantID, botID uuid.UUID, key string, chatID int64, allow func() error) (TemplateTestResult, error) {
	bot, err := s.GetBot(ctx, tenantID, botID)
	if err != nil {
		return TemplateTestResult{}, err
	}
	if err := checkTemplateKey(key); err != nil {
		return TemplateTestResult{}, err
	}
	if chatID == 0 {
		return TemplateTestResult{}, validate.Field("chat_id", "chat_id is required (a non-zero Telegram chat id)")
	}
	t, err := s.getTemplate(ctx, s.db, botID, key)
	if err != nil {
		return TemplateTestResult{}, err
	}
	mt, err := compileTemplate(t.Text, t.ParseMode, t.Variables)
	if err != nil || strings.TrimSpace(t.Text) == "" {
		return TemplateTestResult{}, validate.Field("key", "the template %q has no text to send", key)
	}
	msg, reason := mt.RenderFor(SampleLookup(bot.Name, t.Variables))
	if reason != "" {
		return TemplateTestResult{}, validate.Field("key", "the template %q cannot be sent: %s", key, reason)
	}
	if allow != nil {
		if err := allow(); err != nil {
			return TemplateTestResult{}, err
		}
	}
	out := s.Send(ctx, bot, chatID, msg)
	return TemplateTestResult{Text: msg.Text, ParseMode: msg.ParseMode, Outcome: out}, nil
}

// compileTemplate parses a stored template.
func compileTemplate(text, parseMode string, vars map[string]string) (MessageTemplate, error) {
	names := append([]string{VarBotName, VarExternalID}, slices.Collect(maps.Keys(vars))...)
	tpl, err := textvars.Parse(text, names...)
	if err != nil {
		return MessageTemplate{}, err
	}
	return MessageTemplate{Text: text, ParseMode: parseMode, Template: tpl}, nil
}
