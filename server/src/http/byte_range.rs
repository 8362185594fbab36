//! HTTP byte ranges (RFC 9110, section 14): which part of a file a `Range` header asks for, so
//! that a browser can seek in a video without downloading all of it.

/// What to send for a `Range` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// The whole file: no `Range` header, a unit other than `bytes`, or several ranges (which
    /// this server may ignore; browsers ask for one).
    Full,
    /// Bytes `start..=end` (206 Partial Content).
    Partial { start: u64, end: u64 },
    /// A range the file cannot satisfy, or one that cannot be read (416).
    Unsatisfiable,
}

impl ByteRange {
    /// The range `header` asks of a file of `len` bytes.
    pub fn parse(header: Option<&str>, len: u64) -> Self {
        let Some(header) = header else {
            return ByteRange::Full;
        };
        let Some((unit, spec)) = header.trim().split_once('=') else {
            return ByteRange::Unsatisfiable;
        };
        if !unit.trim().eq_ignore_ascii_case("bytes") {
            return ByteRange::Full;
        }
        if spec.contains(',') {
            return ByteRange::Full;
        }
        let Some((first, last)) = spec.trim().split_once('-') else {
            return ByteRange::Unsatisfiable;
        };
        let number = |s: &str| {
            let s = s.trim();
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u64>().ok())
                .flatten()
        };
        let (first, last) = (first.trim(), last.trim());
        if first.is_empty() {
            // `-N`: the last N bytes.
            return match number(last) {
                Some(n) if n > 0 && len > 0 => ByteRange::Partial {
                    start: len.saturating_sub(n),
                    end: len - 1,
                },
                _ => ByteRange::Unsatisfiable,
            };
        }
        let Some(start) = number(first) else {
            return ByteRange::Unsatisfiable;
        };
        if start >= len {
            return ByteRange::Unsatisfiable;
        }
        let end = if last.is_empty() {
            len - 1
        } else {
            match number(last) {
                Some(end) if end >= start => end.min(len - 1),
                _ => return ByteRange::Unsatisfiable,
            }
        };
        ByteRange::Partial { start, end }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(h: &str) -> ByteRange {
        ByteRange::parse(Some(h), 1000)
    }

    fn part(start: u64, end: u64) -> ByteRange {
        ByteRange::Partial { start, end }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(ByteRange::parse(None, 1000), ByteRange::Full);
        assert_eq!(parse("bytes=0-99"), part(0, 99));
        assert_eq!(parse("bytes=100-"), part(100, 999));
        assert_eq!(parse("bytes=-100"), part(900, 999));
        assert_eq!(parse("bytes=-5000"), part(0, 999));
        assert_eq!(parse("bytes=900-5000"), part(900, 999));
        assert_eq!(parse("bytes=999-999"), part(999, 999));
        assert_eq!(parse(" Bytes = 5 - 9 "), part(5, 9));
    }

    #[test]
    fn unsatisfiable_and_malformed_ranges() {
        for bad in [
            "bytes=1000-",
            "bytes=1000-2000",
            "bytes=-0",
            "bytes=5-4",
            "bytes=abc",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "bytes=1-2x",
            "bytes",
        ] {
            assert_eq!(parse(bad), ByteRange::Unsatisfiable, "{bad}");
        }
        assert_eq!(
            ByteRange::parse(Some("bytes=0-"), 0),
            ByteRange::Unsatisfiable
        );
        assert_eq!(
            ByteRange::parse(Some("bytes=-1"), 0),
            ByteRange::Unsatisfiable
        );
    }

    #[test]
    fn ignored_ranges_send_the_whole_file() {
        assert_eq!(parse("items=0-5"), ByteRange::Full);
        assert_eq!(parse("bytes=0-5,10-20"), ByteRange::Full);
    }
}
