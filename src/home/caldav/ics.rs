//! The little iCalendar the sync needs: the UID of an object and whether two VCALENDAR texts
//! say the same thing. Everything else about ICS belongs to `home::calendar`.

/// The content lines of an iCalendar text, unfolded (RFC 5545 §3.1), without line ends.
pub fn unfold(ics: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for raw in ics.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        match (line.strip_prefix([' ', '\t']), lines.last_mut()) {
            (Some(cont), Some(prev)) => prev.push_str(cont),
            _ => lines.push(line.to_owned()),
        }
    }
    lines.retain(|l| !l.trim().is_empty());
    lines
}

/// The property name of a content line (`DTSTART` of `DTSTART;TZID=Europe/Berlin:2026…`).
fn name_of(line: &str) -> &str {
    let end = line.find([';', ':']).unwrap_or(line.len());
    &line[..end]
}

/// The UID of the first component that has one (`None` when there is none).
pub fn uid_of(ics: &str) -> Option<String> {
    unfold(ics).into_iter().find_map(|l| {
        if !name_of(&l).eq_ignore_ascii_case("UID") {
            return None;
        }
        let value = l.split_once(':')?.1.trim();
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// Whether two VCALENDAR texts hold the same content lines, in any order and folding, with
/// `PRODID` ignored (servers re-serialize what they store).
pub fn same_content(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let mut v: Vec<String> = unfold(s)
            .into_iter()
            .filter(|l| !name_of(l).eq_ignore_ascii_case("PRODID"))
            .collect();
        v.sort();
        v
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_is_found_unfolded_with_parameters_and_any_line_end() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:abc@x\r\nEND:VEVENT\r\n",
                Some("abc@x"),
            ),
            (
                "BEGIN:VEVENT\nUID:long-\n uid-folded\nEND:VEVENT\n",
                Some("long-uid-folded"),
            ),
            ("BEGIN:VEVENT\nuid;X-A=1:lower\nEND:VEVENT\n", Some("lower")),
            (
                "BEGIN:VEVENT\nUIDX:no\nSUMMARY:UID:not this\nEND:VEVENT\n",
                None,
            ),
            ("BEGIN:VEVENT\nUID:\nEND:VEVENT\n", None),
        ];
        for (ics, want) in cases {
            assert_eq!(uid_of(ics).as_deref(), *want, "{ics:?}");
        }
    }

    #[test]
    fn same_content_ignores_order_folding_line_ends_and_prodid() {
        let a = "BEGIN:VCALENDAR\r\nPRODID:-//us//EN\r\nBEGIN:VEVENT\r\nUID:1\r\nSUMMARY:Dentist appointment\r\nDTSTART:20260102T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let b = "BEGIN:VCALENDAR\nPRODID:-//them//EN\nBEGIN:VEVENT\nDTSTART:20260102T100000Z\nUID:1\nSUMMARY:Dentist \n appointment\nEND:VEVENT\nEND:VCALENDAR\n";
        assert!(same_content(a, b));
        let c = b.replace("Dentist", "Doctor");
        assert!(!same_content(a, &c));
    }
}
