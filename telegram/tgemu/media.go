package tgemu

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// jsPhotoSize is PhotoSize (core.telegram.org/bots/api#photosize).
type jsPhotoSize struct {
	FileID       string `json:"file_id"`
	FileUniqueID string `json:"file_unique_id"`
	Width        int    `json:"width"`
	Height       int    `json:"height"`
	FileSize     int    `json:"file_size,omitempty"`
}

// jsDocument is Document (core.telegram.org/bots/api#document).
type jsDocument struct {
	FileID       string `json:"file_id"`
	FileUniqueID string `json:"file_unique_id"`
	FileName     string `json:"file_name,omitempty"`
	MimeType     string `json:"mime_type,omitempty"`
}

// jsMediaMessage is a Message carrying a photo or a document with its caption.
type jsMediaMessage struct {
	jsMessage
	Photo           []jsPhotoSize `json:"photo,omitempty"`
	Document        *jsDocument   `json:"document,omitempty"`
	Caption         string        `json:"caption,omitempty"`
	CaptionEntities []jsEntity    `json:"caption_entities,omitempty"`
}

// sendPhoto: core.telegram.org/bots/api#sendphoto. photo is a URL, a file_id or
// an uploaded file part; caption 0-1024 characters after entity parsing.
func (b *bot) sendPhoto(ctx context.Context, p params) apiResult {
	return b.sendMedia(ctx, p, "photo", "sendPhoto")
}

// sendDocument: core.telegram.org/bots/api#senddocument. Like sendPhoto.
func (b *bot) sendDocument(ctx context.Context, p params) apiResult {
	return b.sendMedia(ctx, p, "document", "sendDocument")
}

// sendMedia implements sendPhoto and sendDocument (kind "photo" or "document"):
// the checks of sendMessage with caption in place of text (at most 1024
// characters, may be empty), a required media parameter (a string or an
// uploaded part), the same chat checks and rate limits, and the call recorded
// in Sent with all its options.
func (b *bot) sendMedia(_ context.Context, p params, kind, method string) apiResult {
	chatID, bad := parseChatID(p)
	if bad != nil {
		return *bad
	}
	ref := strings.TrimSpace(p.str(kind))
	if ref == "" && !slices.Contains(p.files, kind) {
		return badRequest("there is no " + kind + " in the request")
	}
	if ref == "" {
		ref = "attach://" + kind
	}
	caption := p.str("caption")
	parseMode := p.str("parse_mode")
	switch strings.ToLower(parseMode) {
	case "", "html", "markdown", "markdownv2":
	default:
		return badRequest("unsupported parse_mode")
	}
	plain := plainText(caption, parseMode)
	if utf8.RuneCountInString(plain) > 1024 {
		return badRequest("message caption is too long")
	}
	var markup map[string]json.RawMessage
	if _, err := p.json("reply_markup", &markup); err != nil {
		return badRequest("can't parse reply keyboard markup JSON object")
	}
	var ents []jsEntity
	if _, err := p.json("caption_entities", &ents); err != nil {
		return badRequest("can't parse entities JSON object")
	}

	now := time.Now()
	sm := SentMessage{BotID: b.info.ID, ChatID: chatID, Text: caption, ParseMode: parseMode, At: now, Method: method}
	if kind == "photo" {
		sm.Photo = ref
	} else {
		sm.Document = ref
	}
	msgID, chat, res, accepted := b.acceptSend(sm, p)
	if !accepted {
		return res
	}

	from := b.botUser()
	msg := jsMediaMessage{
		jsMessage: jsMessage{MessageID: msgID, From: &from, Chat: chat, Date: now.Unix()},
		Caption:   plainText(caption, parseMode), CaptionEntities: ents,
	}
	if raw, has := markup["inline_keyboard"]; has {
		msg.ReplyMarkup, _ = json.Marshal(map[string]json.RawMessage{"inline_keyboard": raw})
	}
	fileID, uniqueID := fileIDs(ref)
	if kind == "photo" {
		msg.Photo = []jsPhotoSize{
			{FileID: fileID + "_s", FileUniqueID: uniqueID + "s", Width: 90, Height: 90},
			{FileID: fileID, FileUniqueID: uniqueID, Width: 800, Height: 800},
		}
	} else {
		name := "document"
		if i := strings.Index(ref, "://"); i >= 0 && !strings.HasPrefix(ref, "attach://") {
			if base := path.Base(ref[i+3:]); base != "." && base != "/" {
				name = base
			}
		}
		msg.Document = &jsDocument{FileID: fileID, FileUniqueID: uniqueID, FileName: name, MimeType: "application/octet-stream"}
	}
	return ok(msg)
}

// fileIDs returns the file_id and file_unique_id the emulator answers for a
// media reference: a file_id is kept; a URL or an upload gets ids derived from
// it (stable, URL-safe base64).
func fileIDs(ref string) (string, string) {
	sum := sha256.Sum256([]byte(ref))
	unique := base64.RawURLEncoding.EncodeToString(sum[:8])
	if !strings.Contains(ref, "://") {
		return ref, unique
	}
	return "BQACAgQAAx" + base64.RawURLEncoding.EncodeToString(sum[:24]), unique
}

// sentOptions copies the send options of p into m: reply_markup and
// link_preview_options as JSON text, disable_notification, protect_content and
// allow_paid_broadcast as booleans (an unparsable boolean reads as false).
func sentOptions(m SentMessage, p params) SentMessage {
	if v := strings.TrimSpace(p.str("reply_markup")); v != "null" {
		m.ReplyMarkup = v
	}
	if v := strings.TrimSpace(p.str("link_preview_options")); v != "null" {
		m.LinkPreviewOptions = v
	}
	m.DisableNotification, _ = p.bool("disable_notification")
	m.ProtectContent, _ = p.bool("protect_content")
	m.AllowPaidBroadcast, _ = p.bool("allow_paid_broadcast")
	return m
}
