package broadcast

import (
	"github.com/botfleet/botfleet/internal/textvars"
	"github.com/botfleet/botfleet/telegram"
)

// Content is what a broadcast sends besides its message_text and parse_mode (the JSON of
// broadcasts.content): telegram.Content, and Template, set on every broadcast created since
// variables exist, which marks MessageText as a textvars template. A broadcast without
// Content (created before) sends its text as it is.
type Content struct {
	telegram.Content
	// Template: MessageText is a template (variables, {{ and }} escapes).
	Template bool `json:"template,omitempty"`
}

// checkContent validates nb's message (telegram.CheckMessage: parse_mode, message_text or
// caption, variables, formatting, photo/document, reply_markup) and normalises its
// parse_mode.
func checkContent(nb *NewBroadcast) error {
	m, err := telegram.CheckMessage("message_text", nb.MessageText, nb.ParseMode, nb.Content)
	if err != nil {
		return err
	}
	nb.ParseMode = m.ParseMode
	return nil
}

// contentOf is the stored Content of a new broadcast with content c.
func contentOf(c telegram.Content) *Content {
	return &Content{Content: c, Template: true}
}

// messageOf returns what the run of b sends: the message of every recipient, and, when b's
// text uses variables, the template to render per recipient (nil otherwise: msg is sent to
// everyone as it is, at no extra cost).
func messageOf(b Broadcast) (telegram.Outgoing, *telegram.MessageTemplate) {
	msg := telegram.Outgoing{Text: b.MessageText, ParseMode: b.ParseMode}
	if b.Content == nil {
		return msg, nil
	}
	msg.Content = b.Content.Content
	if !b.Content.Template {
		return msg, nil
	}
	tpl, err := textvars.Parse(b.MessageText)
	if err != nil { // validated at create time; send the text as it is rather than nothing
		return msg, nil
	}
	if !tpl.HasVariables() {
		msg.Text = tpl.Render(b.ParseMode, nil)
		return msg, nil
	}
	return msg, &telegram.MessageTemplate{Text: b.MessageText, ParseMode: b.ParseMode, Content: msg.Content, Template: tpl}
}

// personalise builds the per-recipient messages of a chunk: rows[i] gets base with its
// text rendered from the contact's values claimed with it. A recipient whose rendered text
// does not fit (RenderFor) is not sent: bad[i] holds the reason.
func personalise(tpl *telegram.MessageTemplate, base telegram.Outgoing, rows []claimed) (msgs []telegram.Outgoing, bad []string) {
	msgs = make([]telegram.Outgoing, len(rows))
	for i, r := range rows {
		o, reason := tpl.RenderFor(telegram.ContactLookup(r.FirstName, r.LastName, r.Username, r.Attributes))
		if reason != "" {
			if bad == nil {
				bad = make([]string, len(rows))
			}
			bad[i] = reason
		}
		m := base
		m.Text = o.Text
		msgs[i] = m
	}
	return msgs, bad
}
