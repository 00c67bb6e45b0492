package api

import "github.com/botfleet/botfleet/telegram"

// contentFields are the content options of POST /broadcast/ and POST /messages/ and of
// their answers, in Telegram's names (core.telegram.org/bots/api#sendmessage, #sendphoto,
// #senddocument): with photo or document the message's text is the caption. Embedded in the
// request and response structs (its fields are top-level JSON fields).
type contentFields struct {
	// Photo is an http(s) URL or a Telegram file_id; sent with sendPhoto.
	Photo string `json:"photo,omitempty"`
	// Document is an http(s) URL or a Telegram file_id; sent with sendDocument.
	Document string `json:"document,omitempty"`
	// ReplyMarkup is an inline keyboard: {"inline_keyboard": [[{"text", "url"|"callback_data"}]]}.
	ReplyMarkup         *telegram.InlineKeyboardMarkup `json:"reply_markup,omitempty"`
	DisableNotification bool                           `json:"disable_notification"`
	ProtectContent      bool                           `json:"protect_content"`
	// LinkPreviewOptions: {"is_disabled": true} turns the link preview off (text messages).
	LinkPreviewOptions *linkPreviewOptions `json:"link_preview_options,omitempty"`
}

// linkPreviewOptions is Telegram's LinkPreviewOptions, of which only is_disabled is
// supported (core.telegram.org/bots/api#linkpreviewoptions).
type linkPreviewOptions struct {
	IsDisabled bool `json:"is_disabled"`
}

// toContent converts the wire fields (validated by telegram.CheckMessage in the service).
func (f contentFields) toContent() telegram.Content {
	return telegram.Content{
		Photo: f.Photo, Document: f.Document, ReplyMarkup: f.ReplyMarkup,
		DisableNotification: f.DisableNotification, ProtectContent: f.ProtectContent,
		DisableLinkPreview: f.LinkPreviewOptions != nil && f.LinkPreviewOptions.IsDisabled,
	}
}

// toContentFields is the answer's view of c.
func toContentFields(c telegram.Content) contentFields {
	f := contentFields{
		Photo: c.Photo, Document: c.Document, ReplyMarkup: c.ReplyMarkup,
		DisableNotification: c.DisableNotification, ProtectContent: c.ProtectContent,
	}
	if c.DisableLinkPreview {
		f.LinkPreviewOptions = &linkPreviewOptions{IsDisabled: true}
	}
	return f
}
