-- Rich content of broadcasts and single messages (issue 7, "Content"): the JSON object of
-- telegram.Content (photo or document by URL or file_id, inline keyboard reply_markup,
-- disable_notification, protect_content, disable_link_preview); for a broadcast also
-- "template": true, marking a message_text written with variables ({first_name|there},
-- {{ for a literal brace) that the run renders per recipient. NULL: a plain text message
-- (every broadcast and message created before this migration; their text is sent as it is).
-- Metadata-only ADD COLUMNs: no table rewrite.
ALTER TABLE broadcasts ADD COLUMN content jsonb;
ALTER TABLE messages ADD COLUMN content jsonb;
