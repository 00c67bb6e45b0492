package telegram

import (
	"testing"

	"github.com/PaulSonOfLars/gotgbot/v2"
)

// TestMediaOf: each media type of an inbound message becomes typed metadata (the largest
// photo size); a text message has none.
func TestMediaOf(t *testing.T) {
	cases := []struct {
		msg  gotgbot.Message
		want Media
	}{
		{gotgbot.Message{Photo: []gotgbot.PhotoSize{{FileId: "s", Width: 90}, {FileId: "l", FileUniqueId: "lu", Width: 800, Height: 600, FileSize: 5}}},
			Media{Type: MediaPhoto, FileID: "l", FileUniqueID: "lu", Width: 800, Height: 600, FileSize: 5}},
		{gotgbot.Message{Document: &gotgbot.Document{FileId: "d", FileName: "a.pdf", MimeType: "application/pdf", FileSize: 9}},
			Media{Type: MediaDocument, FileID: "d", FileName: "a.pdf", MimeType: "application/pdf", FileSize: 9}},
		{gotgbot.Message{Voice: &gotgbot.Voice{FileId: "v", Duration: 3, MimeType: "audio/ogg"}}, Media{Type: MediaVoice, FileID: "v", Duration: 3, MimeType: "audio/ogg"}},
		{gotgbot.Message{Video: &gotgbot.Video{FileId: "vi", Width: 1, Height: 2, Duration: 4}}, Media{Type: MediaVideo, FileID: "vi", Width: 1, Height: 2, Duration: 4}},
		{gotgbot.Message{VideoNote: &gotgbot.VideoNote{FileId: "vn", Length: 240, Duration: 5}}, Media{Type: MediaVideoNote, FileID: "vn", Length: 240, Duration: 5}},
		{gotgbot.Message{Audio: &gotgbot.Audio{FileId: "au", Title: "Song", Performer: "X"}}, Media{Type: MediaAudio, FileID: "au", Title: "Song", Performer: "X"}},
		{gotgbot.Message{Sticker: &gotgbot.Sticker{FileId: "st", Emoji: "🙂", Type: "regular", Width: 512, Height: 512}},
			Media{Type: MediaSticker, FileID: "st", Emoji: "🙂", StickerType: "regular", Width: 512, Height: 512}},
		{gotgbot.Message{Location: &gotgbot.Location{Latitude: 1.5, Longitude: -2.5}}, Media{Type: MediaLocation, Latitude: 1.5, Longitude: -2.5}},
		{gotgbot.Message{Contact: &gotgbot.Contact{PhoneNumber: "+491", FirstName: "Ann", UserId: 7}}, Media{Type: MediaContact, PhoneNumber: "+491", FirstName: "Ann", UserID: 7}},
	}
	for _, c := range cases {
		got := MediaOf(mediaOf(&c.msg))
		if got == nil || *got != c.want {
			t.Errorf("%s: got %+v", c.want.Type, got)
		}
	}
	if raw := mediaOf(&gotgbot.Message{Text: "hi"}); raw != nil {
		t.Errorf("text: %s", raw)
	}
}
