//! Session ids: readable (date, time, a slug of the name) plus a short random suffix, e.g.
//! `20251106_170116_phrase04_k7m2x`. The name itself, any text, is kept in the session's
//! metadata; the id is safe as a file name and in a URL whatever the name holds.

use rand::Rng;
use time::OffsetDateTime;

/// The suffix alphabet: letters and digits without the look-alikes 0 O 1 I l.
const ALPHABET: &[u8] = b"23456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
const SUFFIX_LEN: usize = 5;

/// A new id for a session named `name` created at `now`.
pub fn generate(name: &str, now: OffsetDateTime) -> String {
    let slug = referee_protocol::text::slug(name);
    let mut rng = rand::rng();
    let suffix: String = (0..SUFFIX_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!(
        "{:04}{:02}{:02}_{:02}{:02}{:02}_{slug}_{suffix}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// A new resume token: 32 characters from the same alphabet (about 187 bits).
pub fn resume_token() -> String {
    let mut rng = rand::rng();
    (0..32)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn readable_prefix_and_unambiguous_suffix() {
        let id = generate("phrase04", datetime!(2025-11-06 17:01:16 UTC));
        assert!(id.starts_with("20251106_170116_phrase04_"), "{id}");
        let suffix = &id["20251106_170116_phrase04_".len()..];
        assert_eq!(suffix.len(), SUFFIX_LEN);
        assert!(suffix.chars().all(|c| !"0O1Il".contains(c)), "{suffix}");
        assert!(referee_protocol::text::valid_id(&id));
    }

    #[test]
    fn any_name_makes_a_valid_id() {
        for name in [
            "a".repeat(43),
            "Final, pool A — piste 3".into(),
            "x".repeat(200),
        ] {
            let id = generate(&name, OffsetDateTime::now_utc());
            assert!(referee_protocol::text::valid_id(&id), "{name}: {id}");
        }
    }

    #[test]
    fn ids_differ() {
        let now = OffsetDateTime::now_utc();
        assert_ne!(generate("a", now), generate("a", now));
    }
}
