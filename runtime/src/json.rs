//! JSON as browsers write it.

/// `text` with each escaped lone surrogate (`\ud83d` not followed by its low
/// half, or a low half alone) replaced by `\ufffd`; `None` when there is none.
///
/// JavaScript strings are UTF-16 and may hold half of a surrogate pair (a
/// string cut in the middle of an emoji); `JSON.stringify` writes that half as
/// an escape, which is valid JSON but names no character, so serde refuses
/// the whole text. Replacing it as `TextDecoder` would keeps the message.
pub(crate) fn without_lone_surrogates(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let unit_at = |i: usize| -> Option<u16> {
        let hex = text.get(i + 2..i + 6)?;
        (bytes.get(i) == Some(&b'\\') && bytes.get(i + 1) == Some(&b'u'))
            .then(|| u16::from_str_radix(hex, 16).ok())
            .flatten()
    };
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = unit_at(i) else {
            i += 2; // another escape, such as \\ or \"
            continue;
        };
        let high = (0xD800..0xDC00).contains(&unit);
        let low = (0xDC00..0xE000).contains(&unit);
        if high && unit_at(i + 6).is_some_and(|next| (0xDC00..0xE000).contains(&next)) {
            i += 12;
        } else if high || low {
            let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[copied..i]);
            out.push_str("\\ufffd");
            i += 6;
            copied = i;
        } else {
            i += 6;
        }
    }
    out.map(|mut out| {
        out.push_str(&text[copied..]);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_halves_become_the_replacement_character_and_pairs_stay() {
        assert_eq!(without_lone_surrogates(r#"["a\ud83d"]"#).as_deref(), Some(r#"["a\ufffd"]"#));
        assert_eq!(
            without_lone_surrogates(r#"["\ude00x\ud83d\ude00"]"#).as_deref(),
            Some(r#"["\ufffdx\ud83d\ude00"]"#)
        );
        assert_eq!(without_lone_surrogates(r#"["\ud83d\u0041"]"#).as_deref(), Some(r#"["\ufffd\u0041"]"#));
        assert_eq!(without_lone_surrogates(r#"["\ud83d\ude00", "\\ud83d", "\u00e9"]"#), None);
        let fixed = without_lone_surrogates(r#"{"s":"x\ud83d"}"#).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&fixed).unwrap()["s"], "x\u{fffd}");
    }
}
