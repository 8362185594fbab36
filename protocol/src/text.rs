//! The strings a client sends, and the rules they follow: how long each may be, what a session
//! name may hold, how a session id is made from it, and how text from a peer is shown on a log
//! line or a terminal without its control characters.
//!
//! A session has two names: its **name**, any text a person types (`Final, pool A — piste 3`),
//! kept whole in the session's record; and its **id**, made of a date, a time, a short
//! **slug** of the name and a random suffix, which is safe as a file name and in a URL.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The longest session name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The longest session id (and anything else used as a file or path name), in bytes.
pub const MAX_ID_LEN: usize = 64;
/// The longest slug of a name that goes into a session id, in bytes.
pub const MAX_SLUG_LEN: usize = 32;
/// The longest `source` (the video's file name) of a `SESSION_START`, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1024;
/// The longest `file_name` of a `SIGNAL`, in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 1024;
/// The longest `message` of an `ERROR`, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// The longest resume token, in bytes.
pub const MAX_TOKEN_LEN: usize = 128;
/// The longest camera name of a bout, in bytes.
pub const MAX_CAMERA_LEN: usize = 32;

/// Whether `name` is a camera's name: 1 to [`MAX_CAMERA_LEN`] ASCII letters, digits, `-` or
/// `_` (it names the camera's files and appears in URLs).
pub fn valid_camera(name: &str) -> bool {
    (1..=MAX_CAMERA_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a session name: 1 to [`MAX_NAME_CHARS`] characters, none of them a control
/// character. Returns why it is refused.
pub fn check_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if name.trim().is_empty() {
        return Err(String::from("the name is empty: give the session a name"));
    }
    if chars > MAX_NAME_CHARS {
        return Err(format!(
            "the name is {chars} characters long, more than {MAX_NAME_CHARS}: shorten it"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "the name {} holds a control character: use printable text",
            quoted(name)
        ));
    }
    Ok(())
}

/// Turns any text (e.g. a video's file stem) into a session name: control characters become
/// spaces, and it is cut to [`MAX_NAME_CHARS`]; `session` when nothing is left.
pub fn name_from(text: &str) -> String {
    let name: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_NAME_CHARS)
        .collect();
    if name.trim().is_empty() {
        String::from("session")
    } else {
        name
    }
}

/// Checks that a client-given string is at most `limit` bytes; `what` names it in the error.
pub fn check_len(what: &str, text: &str, limit: usize) -> Result<(), String> {
    if text.len() > limit {
        return Err(format!(
            "{what} is {} bytes long, more than the limit of {limit} bytes",
            text.len()
        ));
    }
    Ok(())
}

/// Whether `id` is a well-formed session id: 1 to [`MAX_ID_LEN`] ASCII letters, digits, `-`
/// or `_`. Anything else is never a session (and never a path).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The slug of a name, for its session id: ASCII letters, digits, `-` and `_` kept, anything
/// else `_`, at most [`MAX_SLUG_LEN`] bytes; `session` for a name with nothing to keep.
pub fn slug(name: &str) -> String {
    let mut slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_SLUG_LEN)
        .collect();
    if slug.bytes().all(|b| b == b'_') {
        slug = String::from("session");
    }
    slug
}

/// `text` with every control character (and the Unicode controls that reorder a line)
/// written as an escape (`\n`, `\u{1b}`), so that text from a peer cannot forge a log line
/// or drive a terminal.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` in double quotes, escaped like [`escape_controls`] and cut to 80 characters: how a
/// message names a string a client sent.
pub fn quoted(text: &str) -> String {
    let mut out = String::from("\"");
    let shown: String = text.chars().take(80).collect();
    let _ = write!(out, "{}", escape_controls(&shown).replace('"', "\\\""));
    if shown.len() < text.len() {
        out.push('…');
    }
    out.push('"');
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_printable_name_is_a_name_and_gets_a_short_slug() {
        for name in [
            "phrase04",
            "Final, pool A — piste 3",
            "Épée féminine",
            &"a".repeat(43),
            &"x".repeat(MAX_NAME_CHARS),
        ] {
            assert_eq!(check_name(name), Ok(()), "{name}");
            let slug = slug(name);
            assert!(valid_id(&slug) && slug.len() <= MAX_SLUG_LEN, "{slug}");
        }
        assert_eq!(slug("bout 3 (final).avi"), "bout_3__final__avi");
        assert_eq!(name_from("bout 3\t(final)"), "bout 3 (final)");
        assert_eq!(name_from(""), "session");
        assert_eq!(check_name(&name_from(&"é".repeat(500))), Ok(()));
        assert_eq!(slug("éé"), "session");
        assert_eq!(slug(""), "session");
    }

    #[test]
    fn empty_long_and_control_names_are_refused_with_why() {
        assert!(check_name("").unwrap_err().contains("empty"));
        assert!(check_name("  ").unwrap_err().contains("empty"));
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        assert!(check_name(&long).unwrap_err().contains("201 characters"));
        let err = check_name("a\u{1b}[31mred").unwrap_err();
        assert!(
            err.contains("control character") && err.contains("\\u{1b}"),
            "{err}"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain"), "plain");
        assert_eq!(
            escape_controls("a\nINFO forged\u{1b}[2J"),
            "a\\nINFO forged\\u{1b}[2J"
        );
        assert_eq!(escape_controls("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(quoted("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert!(quoted(&"y".repeat(100)).ends_with("…\""));
    }

    #[test]
    fn ids_are_ascii_and_bounded() {
        assert!(valid_id("20251106_170116_phrase04_k7m2x"));
        assert!(!valid_id("../etc"));
        assert!(!valid_id(""));
        assert!(!valid_id(&"a".repeat(MAX_ID_LEN + 1)));
        assert!(check_len("source", "a.mp4", MAX_SOURCE_BYTES).is_ok());
        let err = check_len("source", &"a".repeat(2000), MAX_SOURCE_BYTES).unwrap_err();
        assert!(err.contains("2000 bytes") && err.contains("1024"), "{err}");
    }
}
