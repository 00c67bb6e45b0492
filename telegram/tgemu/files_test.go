package tgemu

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// TestGetFileAndDownload: a file registered with AddFile is found by getFile (file_path,
// file_size) and downloaded byte for byte from /file/bot<token>/<file_path>; an unknown
// file_id is 400, an unknown token or path 404.
func TestGetFileAndDownload(t *testing.T) {
	s := NewTest(t, Options{})
	info := s.CreateBot("files_bot", "Files")
	b := newGotBot(t, s, info.Token)
	data := bytes.Repeat([]byte("pixel"), 1000)
	s.AddFile("AgACfile", data)
	f, err := b.GetFile("AgACfile", nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.FilePath == "" || f.FileSize != int64(len(data)) || f.FileUniqueId == "" {
		t.Fatalf("%+v", f)
	}
	get := func(url string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(url) //nolint:noctx,gosec // test: the emulator on loopback
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	if code, body := get(s.URL() + "/file/bot" + info.Token + "/" + f.FilePath); code != 200 || !bytes.Equal(body, data) {
		t.Fatalf("download: %d, %d bytes", code, len(body))
	}
	if code, _ := get(s.URL() + "/file/bot" + info.Token + "/files/unknown"); code != 404 {
		t.Fatalf("unknown path: %d", code)
	}
	if code, _ := get(s.URL() + "/file/bot1:wrongtoken/" + f.FilePath); code != 404 {
		t.Fatalf("unknown token: %d", code)
	}
	if _, err := b.GetFile("nope", nil); asTelegramError(t, err).Code != 400 {
		t.Fatalf("unknown file_id: %v", err)
	}
}
