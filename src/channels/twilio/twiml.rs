//! TwiML: the XML a Twilio webhook answers with.

/// Escape text for an XML element or a double-quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

const HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

/// `<Response/>`: nothing to say now.
pub fn empty() -> String {
    format!("{HEAD}<Response/>")
}

/// One `<Message>` per part.
pub fn messages(parts: &[String]) -> String {
    let mut out = format!("{HEAD}<Response>");
    for p in parts {
        out.push_str("<Message>");
        out.push_str(&escape(p));
        out.push_str("</Message>");
    }
    out.push_str("</Response>");
    out
}

/// Greet, then connect the call's audio to our Media Streams WebSocket.
pub fn stream(greeting: &str, ws_url: &str, params: &[(&str, &str)], record: bool) -> String {
    let mut out = format!("{HEAD}<Response>");
    if record {
        out.push_str("<Start><Recording/></Start>");
    }
    if !greeting.is_empty() {
        out.push_str(&format!("<Say>{}</Say>", escape(greeting)));
    }
    out.push_str(&format!("<Connect><Stream url=\"{}\">", escape(ws_url)));
    for (k, v) in params {
        out.push_str(&format!(
            "<Parameter name=\"{}\" value=\"{}\"/>",
            escape(k),
            escape(v)
        ));
    }
    out.push_str("</Stream></Connect></Response>");
    out
}

/// Say `text` inside a speech `<Gather>` that posts what the caller says (or presses) to
/// `action`; when the caller says nothing, say goodbye and hang up. `hangup`: just say `text`
/// and hang up.
pub fn gather(text: &str, action: &str, hangup: bool) -> String {
    let mut out = format!("{HEAD}<Response>");
    if hangup {
        out.push_str(&format!("<Say>{}</Say><Hangup/></Response>", escape(text)));
        return out;
    }
    out.push_str(&format!(
        "<Gather input=\"speech dtmf\" action=\"{}\" method=\"POST\" speechTimeout=\"auto\" numDigits=\"1\">",
        escape(action)
    ));
    if !text.is_empty() {
        out.push_str(&format!("<Say>{}</Say>", escape(text)));
    }
    out.push_str("</Gather><Say>I did not hear anything. Goodbye.</Say><Hangup/></Response>");
    out
}

/// Speak a reminder on an outbound call, then listen for "snooze" or "done".
pub fn reminder_call(text: &str, action: &str) -> String {
    format!(
        "{HEAD}<Response><Gather input=\"speech dtmf\" action=\"{}\" method=\"POST\" speechTimeout=\"auto\" numDigits=\"1\" hints=\"snooze, done\"><Say>{}</Say><Say>Say snooze, or press 1, to hear it again in ten minutes. Say done, or press 2, if it is done.</Say></Gather><Say>Goodbye.</Say><Hangup/></Response>",
        escape(action),
        escape(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_documents_are_well_formed() {
        let doc = messages(&["Fish & chips <today> \"ok\"".into(), "2".into()]);
        assert_eq!(
            doc,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>Fish &amp; chips &lt;today&gt; &quot;ok&quot;</Message><Message>2</Message></Response>"
        );
        let s = stream(
            "Hi",
            "wss://a.example/twilio/media",
            &[("from", "+1555")],
            false,
        );
        assert!(s.contains("<Connect><Stream url=\"wss://a.example/twilio/media\"><Parameter name=\"from\" value=\"+1555\"/></Stream></Connect>"));
        for doc in [
            empty(),
            s,
            gather("Yes?", "https://a/twilio/voice", false),
            reminder_call("Take the pills", "https://a/twilio/voice?reminder=1&x=2"),
        ] {
            let mut r = quick_xml::Reader::from_str(&doc);
            loop {
                match r.read_event() {
                    Ok(quick_xml::events::Event::Eof) => break,
                    Ok(_) => {}
                    Err(e) => panic!("{doc}: {e}"),
                }
            }
        }
    }
}
