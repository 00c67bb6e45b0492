package telegram

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/PaulSonOfLars/gotgbot/v2"
	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/validate"
)

// Rules of a bot's command list (core.telegram.org/bots/api#botcommand,
// core.telegram.org/bots/api#setmycommands).
const (
	// MaxCommands is the most commands one list may hold.
	MaxCommands = 100
	// MaxCommandLen is the longest command text (without the leading slash).
	MaxCommandLen = 32
	// MaxCommandDescriptionLen is the longest description, in characters.
	MaxCommandDescriptionLen = 256
)

// commandTextRe is Telegram's rule for BotCommand.command: "1-32 characters. Can contain only
// lowercase English letters, digits and underscores".
var commandTextRe = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

// languageCodeRe is the shape of a language_code: "a two-letter ISO 639-1 language code"
// (core.telegram.org/bots/api#setmycommands).
var languageCodeRe = regexp.MustCompile(`^[a-z]{2}$`)

// Command is one entry of a bot's command menu (core.telegram.org/bots/api#botcommand):
// Command without the leading slash, Description as shown next to it.
type Command struct {
	Command     string
	Description string
}

// CommandList is a bot's command list for one language. LanguageCode "" is the default list
// (shown to users whose language has no list of its own). Custom is false when the tenant
// never set the list: the default list is then BotCommands (what registration set) and a
// per-language list is empty (Telegram shows the default list). UpdatedAt is zero when not
// Custom.
type CommandList struct {
	LanguageCode string
	Commands     []Command
	Custom       bool
	UpdatedAt    time.Time
}

// botCommandsRow is a row of bot_commands.
type botCommandsRow struct {
	bun.BaseModel `bun:"table:bot_commands,alias:bcm"`

	BotID        uuid.UUID       `bun:",pk,type:uuid"`
	TenantID     uuid.UUID       `bun:",type:uuid,notnull"`
	LanguageCode string          `bun:",pk"`
	Commands     []storedCommand `bun:",type:jsonb,notnull"`
	UpdatedAt    time.Time       `bun:",nullzero,notnull,default:now()"`
}

// storedCommand is a Command as stored in bot_commands.commands.
type storedCommand struct {
	Command     string `json:"command"`
	Description string `json:"description"`
}

// ValidateLanguageCode checks a language_code (field "language_code"): "" (the default
// list) or two lowercase letters, an ISO 639-1 code as Telegram takes it
// (core.telegram.org/bots/api#setmycommands). Errors: ErrInvalidField (422).
func ValidateLanguageCode(lang string) error {
	if lang != "" && !languageCodeRe.MatchString(lang) {
		return validate.Field("language_code", "language_code must be a two-letter ISO 639-1 code in lowercase, such as en or de")
	}
	return nil
}

// ValidateCommands applies Telegram's rules to a command list
// (core.telegram.org/bots/api#botcommand): at most 100 commands (field "commands"); each
// command 1-32 characters of a-z, 0-9 and _ without the leading slash, not repeated (field
// "commands[i].command"); each description 1-256 characters, not blank, without control
// characters (field "commands[i].description"). Errors: ErrInvalidField (422).
func ValidateCommands(cmds []Command) error {
	if len(cmds) > MaxCommands {
		return validate.Field("commands", "a bot may have at most %d commands, not %d", MaxCommands, len(cmds))
	}
	seen := make(map[string]int, len(cmds))
	for i, c := range cmds {
		field := fmt.Sprintf("commands[%d].command", i)
		if !commandTextRe.MatchString(c.Command) {
			return validate.Field(field, "%s must be 1-%d characters of lowercase a-z, digits and _ (no leading /)", field, MaxCommandLen)
		}
		if j, dup := seen[c.Command]; dup {
			return validate.Field(field, "%s repeats commands[%d].command (%q)", field, j, c.Command)
		}
		seen[c.Command] = i
		if err := validate.Text(fmt.Sprintf("commands[%d].description", i), c.Description, MaxCommandDescriptionLen); err != nil {
			return err
		}
		if strings.ContainsAny(c.Description, "\n\r\t") {
			return validate.Field(fmt.Sprintf("commands[%d].description", i), "commands[%d].description must be one line", i)
		}
	}
	return nil
}

// defaultCommands returns BotCommands as Commands.
func defaultCommands() []Command {
	out := make([]Command, len(BotCommands))
	for i, c := range BotCommands {
		out[i] = Command{Command: c.Command, Description: c.Description}
	}
	return out
}

func toGotgbotCommands(cmds []Command) []gotgbot.BotCommand {
	out := make([]gotgbot.BotCommand, len(cmds))
	for i, c := range cmds {
		out[i] = gotgbot.BotCommand{Command: c.Command, Description: c.Description}
	}
	return out
}

func fromGotgbotCommands(cmds []gotgbot.BotCommand) []Command {
	out := make([]Command, len(cmds))
	for i, c := range cmds {
		out[i] = Command{Command: c.Command, Description: c.Description}
	}
	return out
}

func (r botCommandsRow) list() CommandList {
	cmds := make([]Command, len(r.Commands))
	for i, c := range r.Commands {
		cmds[i] = Command(c)
	}
	return CommandList{LanguageCode: r.LanguageCode, Commands: cmds, Custom: true, UpdatedAt: r.UpdatedAt}
}

// GetCommands returns the command list of the tenant's bot botID for language lang ("" = the
// default list), as stored (no Bot API call): the list last set with SetCommands, or, when
// none was, BotCommands for the default list and an empty list for a language (Custom
// false). Errors: ErrInvalidField (422, language_code), ErrBotNotFound (404),
// apperr.ErrUnavailable (503).
func (s *Service) GetCommands(ctx context.Context, tenantID, botID uuid.UUID, lang string) (CommandList, error) {
	if err := ValidateLanguageCode(lang); err != nil {
		return CommandList{}, err
	}
	if _, err := s.GetBot(ctx, tenantID, botID); err != nil {
		return CommandList{}, err
	}
	lists, err := s.storedCommands(ctx, s.db, tenantID, botID)
	if err != nil {
		return CommandList{}, err
	}
	for _, l := range lists {
		if l.LanguageCode == lang {
			return l, nil
		}
	}
	if lang == "" {
		return CommandList{Commands: defaultCommands()}, nil
	}
	return CommandList{LanguageCode: lang, Commands: []Command{}}, nil
}

// SetCommands replaces the command list of the tenant's bot botID for language lang ("" =
// the default list) and returns it. The list is checked (ValidateCommands,
// ValidateLanguageCode), applied at Telegram first (setMyCommands with language_code,
// core.telegram.org/bots/api#setmycommands; an empty list calls deleteMyCommands, so that
// users of lang see the default list again), then stored, so that POST .../sync/ applies it
// again. An empty list for a language forgets that language's list; an empty default list
// is kept (the bot shows no menu).
//
// Errors: ErrInvalidField (422), ErrBotNotFound (404), ErrInvalidBotToken (422: Telegram
// rejected the token), ErrTelegramError / ErrTelegramDown (502: nothing was stored),
// apperr.ErrUnavailable (503: applied at Telegram but not stored; the health check reports
// commands_out_of_sync until it is set again or synced).
func (s *Service) SetCommands(ctx context.Context, tenantID, botID uuid.UUID, lang string, cmds []Command) (CommandList, error) {
	if err := ValidateLanguageCode(lang); err != nil {
		return CommandList{}, err
	}
	if cmds == nil {
		cmds = []Command{}
	}
	if err := ValidateCommands(cmds); err != nil {
		return CommandList{}, err
	}
	b, err := s.GetBot(ctx, tenantID, botID)
	if err != nil {
		return CommandList{}, err
	}
	api, err := s.apiBotFor(b)
	if err != nil {
		return CommandList{}, fmt.Errorf("open bot token: %w", err)
	}
	if err := applyCommands(ctx, api, lang, cmds); err != nil {
		return CommandList{}, classifyTelegram(err)
	}
	ctx = context.WithoutCancel(ctx) // applied at Telegram: store it even if the client left
	if len(cmds) == 0 && lang != "" {
		_, err := s.db.NewDelete().Model((*botCommandsRow)(nil)).
			Where("tenant_id = ?", tenantID).Where("bot_id = ?", botID).Where("language_code = ?", lang).Exec(ctx)
		if err != nil {
			return CommandList{}, apperr.Classify(fmt.Errorf("delete commands: %w", err))
		}
		return CommandList{LanguageCode: lang, Commands: []Command{}}, nil
	}
	row := botCommandsRow{BotID: botID, TenantID: tenantID, LanguageCode: lang, Commands: make([]storedCommand, len(cmds))}
	for i, c := range cmds {
		row.Commands[i] = storedCommand(c)
	}
	_, err = s.db.NewInsert().Model(&row).
		On("CONFLICT (bot_id, language_code) DO UPDATE").
		Set("commands = EXCLUDED.commands").Set("updated_at = now()").
		Returning("updated_at").Exec(ctx)
	if err != nil {
		return CommandList{}, apperr.Classify(fmt.Errorf("store commands: %w", err))
	}
	return row.list(), nil
}

// applyCommands sets cmds as bot api's list for lang at Telegram: setMyCommands, or
// deleteMyCommands for an empty list.
func applyCommands(ctx context.Context, api *gotgbot.Bot, lang string, cmds []Command) error {
	if len(cmds) == 0 {
		_, err := api.DeleteMyCommandsWithContext(ctx, &gotgbot.DeleteMyCommandsOpts{LanguageCode: lang})
		return err
	}
	_, err := api.SetMyCommandsWithContext(ctx, toGotgbotCommands(cmds), &gotgbot.SetMyCommandsOpts{LanguageCode: lang})
	return err
}

// storedCommands returns the lists stored for bot botID, default list first.
func (s *Service) storedCommands(ctx context.Context, idb bun.IDB, tenantID, botID uuid.UUID) ([]CommandList, error) {
	var rows []botCommandsRow
	err := idb.NewSelect().Model(&rows).
		Where("bcm.tenant_id = ?", tenantID).Where("bcm.bot_id = ?", botID).
		OrderExpr("bcm.language_code").Scan(ctx)
	if err != nil {
		return nil, apperr.Classify(fmt.Errorf("list commands: %w", err))
	}
	out := make([]CommandList, len(rows))
	for i, r := range rows {
		out[i] = r.list()
	}
	return out, nil
}

// expectedCommands returns every list bot b should have at Telegram, default list first:
// the stored lists, with BotCommands as the default list when none is stored.
func (s *Service) expectedCommands(ctx context.Context, b Bot) ([]CommandList, error) {
	lists, err := s.storedCommands(ctx, s.db, b.TenantID, b.ID)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(lists, func(l CommandList) bool { return l.LanguageCode == "" }) {
		lists = append([]CommandList{{Commands: defaultCommands()}}, lists...)
	}
	return lists, nil
}
