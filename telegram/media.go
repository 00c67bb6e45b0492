package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/PaulSonOfLars/gotgbot/v2"
	"github.com/google/uuid"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
)

// Media types of inbound messages (Media.Type, the message list's content_type).
const (
	MediaPhoto     = "photo"
	MediaDocument  = "document"
	MediaVoice     = "voice"
	MediaVideo     = "video"
	MediaVideoNote = "video_note"
	MediaAudio     = "audio"
	MediaSticker   = "sticker"
	MediaLocation  = "location"
	MediaContact   = "contact"
)

// Media is the typed metadata of an inbound message's media (messages.media), after the
// Bot API's types (core.telegram.org/bots/api#message): the Telegram file identifiers and
// sizes, never the bytes (GET /contacts/{id}/messages/{mid}/file/ fetches them through the
// bot). Fields that do not apply to Type are omitted. For a photo, the largest size is kept
// (the last PhotoSize: Telegram lists them smallest first).
type Media struct {
	Type         string  `json:"type"`
	FileID       string  `json:"file_id,omitempty"`
	FileUniqueID string  `json:"file_unique_id,omitempty"`
	FileSize     int64   `json:"file_size,omitempty"` // bytes
	MimeType     string  `json:"mime_type,omitempty"`
	FileName     string  `json:"file_name,omitempty"`
	Width        int64   `json:"width,omitempty"`    // pixels
	Height       int64   `json:"height,omitempty"`   // pixels
	Duration     int64   `json:"duration,omitempty"` // seconds
	Length       int64   `json:"length,omitempty"`   // video_note diameter, pixels
	Performer    string  `json:"performer,omitempty"`
	Title        string  `json:"title,omitempty"`
	Emoji        string  `json:"emoji,omitempty"`
	StickerType  string  `json:"sticker_type,omitempty"`
	Latitude     float64 `json:"latitude,omitempty"`
	Longitude    float64 `json:"longitude,omitempty"`
	PhoneNumber  string  `json:"phone_number,omitempty"`
	FirstName    string  `json:"first_name,omitempty"`
	LastName     string  `json:"last_name,omitempty"`
	UserID       int64   `json:"user_id,omitempty"`
}

// mediaOf returns the JSON of msg's media metadata (Media), or nil for a message without
// media. Cheap: no I/O (called per inbound message in processBatch).
func mediaOf(msg *gotgbot.Message) json.RawMessage {
	var m *Media
	switch {
	case len(msg.Photo) > 0:
		p := msg.Photo[len(msg.Photo)-1]
		m = &Media{Type: MediaPhoto, FileID: p.FileId, FileUniqueID: p.FileUniqueId, FileSize: p.FileSize, Width: p.Width, Height: p.Height}
	case msg.Document != nil:
		d := msg.Document
		m = &Media{Type: MediaDocument, FileID: d.FileId, FileUniqueID: d.FileUniqueId, FileSize: d.FileSize, MimeType: d.MimeType, FileName: d.FileName}
	case msg.Voice != nil:
		v := msg.Voice
		m = &Media{Type: MediaVoice, FileID: v.FileId, FileUniqueID: v.FileUniqueId, FileSize: v.FileSize, MimeType: v.MimeType, Duration: v.Duration}
	case msg.Video != nil:
		v := msg.Video
		m = &Media{Type: MediaVideo, FileID: v.FileId, FileUniqueID: v.FileUniqueId, FileSize: v.FileSize, MimeType: v.MimeType,
			FileName: v.FileName, Width: v.Width, Height: v.Height, Duration: v.Duration}
	case msg.VideoNote != nil:
		v := msg.VideoNote
		m = &Media{Type: MediaVideoNote, FileID: v.FileId, FileUniqueID: v.FileUniqueId, FileSize: v.FileSize, Length: v.Length, Duration: v.Duration}
	case msg.Audio != nil:
		a := msg.Audio
		m = &Media{Type: MediaAudio, FileID: a.FileId, FileUniqueID: a.FileUniqueId, FileSize: a.FileSize, MimeType: a.MimeType,
			FileName: a.FileName, Duration: a.Duration, Performer: a.Performer, Title: a.Title}
	case msg.Sticker != nil:
		st := msg.Sticker
		m = &Media{Type: MediaSticker, FileID: st.FileId, FileUniqueID: st.FileUniqueId, FileSize: st.FileSize, Width: st.Width,
			Height: st.Height, Emoji: st.Emoji, StickerType: st.Type}
	case msg.Location != nil:
		m = &Media{Type: MediaLocation, Latitude: msg.Location.Latitude, Longitude: msg.Location.Longitude}
	case msg.Contact != nil:
		c := msg.Contact
		m = &Media{Type: MediaContact, PhoneNumber: c.PhoneNumber, FirstName: c.FirstName, LastName: c.LastName, UserID: c.UserId}
	default:
		return nil
	}
	b, _ := json.Marshal(m) // a struct of strings and numbers cannot fail
	return b
}

// MediaOf decodes a message's stored media (contacts.Message.Media); nil for none.
func MediaOf(raw json.RawMessage) *Media {
	if len(raw) == 0 {
		return nil
	}
	var m Media
	if json.Unmarshal(raw, &m) != nil || m.Type == "" {
		return nil
	}
	return &m
}

// MaxFileSize is the largest file GET /contacts/{id}/messages/{mid}/file/ proxies, in bytes:
// 20 MB, the most getFile lets a bot download (core.telegram.org/bots/api#getfile).
const MaxFileSize = 20 << 20

// Errors of OpenFile.
var (
	// ErrFileNotFound (404 file_not_found): the message has no media with a file_id (text,
	// location, contact), or Telegram no longer has the file.
	ErrFileNotFound = apperr.NotFound("file_not_found", "the message has no file")
	// ErrFileTooLarge (422 file_too_large): the file is larger than MaxFileSize.
	ErrFileTooLarge = apperr.Invalid("file_too_large", "the file is larger than 20 MB, the Bot API download limit")
)

// File is an open download of a message's file: Body (close it), its length in bytes and
// content type.
type File struct {
	Body          io.ReadCloser
	ContentLength int64
	ContentType   string
	FileName      string
}

// OpenFile opens the file of message mid of contact contactID of the tenant: getFile
// through the message's bot, then a GET of the file from the Bot API's file endpoint
// (whose URL holds the bot token: it is never returned, logged or redirected to). The
// caller streams Body to the client. ContentType is the media's mime_type when Telegram
// gave one, else the file server's Content-Type, else application/octet-stream.
//
// Errors: contacts.ErrMessageNotFound (404: unknown, another tenant's, or not of this
// contact); ErrFileNotFound (404); ErrFileTooLarge (422); ErrBotNotFound (404, the bot was
// deleted); ErrTelegramError (502: Telegram refused getFile or the download failed).
func (s *Service) OpenFile(ctx context.Context, tenantID, contactID, mid uuid.UUID) (File, error) {
	m, err := s.contacts.GetMessage(ctx, tenantID, mid)
	if err != nil {
		return File{}, err
	}
	if m.ContactID == nil || *m.ContactID != contactID {
		return File{}, contacts.ErrMessageNotFound
	}
	md := MediaOf(m.Media)
	if md == nil || md.FileID == "" {
		return File{}, ErrFileNotFound
	}
	if md.FileSize > MaxFileSize {
		return File{}, ErrFileTooLarge
	}
	bot, err := s.BotByID(ctx, m.BotID)
	if err != nil {
		return File{}, err
	}
	api, err := s.apiBotFor(bot)
	if err != nil {
		return File{}, err
	}
	f, err := api.GetFileWithContext(ctx, md.FileID, nil)
	if err != nil {
		var te *gotgbot.TelegramError
		if errors.As(err, &te) && te.Code == http.StatusBadRequest {
			return File{}, ErrFileNotFound
		}
		return File{}, errFileUpstream("getFile: " + safeTelegramError(err))
	}
	if f.FileSize > MaxFileSize {
		return File{}, ErrFileTooLarge
	}
	if f.FilePath == "" {
		return File{}, ErrFileNotFound
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.FileURL(api.Token, f.FilePath, nil), nil)
	if err != nil {
		return File{}, errFileUpstream("bad file path")
	}
	resp, err := s.http.Do(req)
	if err != nil {
		// *url.Error holds the URL (and so the token): never pass it on.
		return File{}, errFileUpstream("download failed")
	}
	if resp.StatusCode != http.StatusOK {
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return File{}, ErrFileNotFound
		}
		return File{}, errFileUpstream("download answered " + strconv.Itoa(resp.StatusCode))
	}
	if resp.ContentLength > MaxFileSize {
		_ = resp.Body.Close()
		return File{}, ErrFileTooLarge
	}
	ct := md.MimeType
	if ct == "" {
		ct = resp.Header.Get("Content-Type")
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	if md.Type == MediaPhoto && md.MimeType == "" {
		ct = "image/jpeg" // Telegram stores photos as JPEG
	}
	return File{Body: struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, MaxFileSize), resp.Body}, ContentLength: resp.ContentLength, ContentType: ct, FileName: md.FileName}, nil
}

// errFileUpstream is a 502 for a failed file fetch; msg never holds the token.
func errFileUpstream(msg string) error {
	return ErrTelegramError.WithMessage("telegram file download failed: %s", msg)
}
