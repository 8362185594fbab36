//! The scoring meaning of a signal file: which events are touches, off-targets, cards, halts,
//! periods and priority (the vocabulary in `docs/signal-format.md`), the bout's score after
//! each of them, the scores that do not follow from the previous one (flags) and the touches
//! where a review is usual (marks). Pure: it reads a parsed [`SignalTrack`].
//!
//! Any other event name stays accepted: it is of kind [`EventKind::Other`] and changes nothing.

use serde::{Deserialize, Serialize};

use crate::signal::{SignalEvent, SignalTrack};

/// The usual target of a bout: 15 touches (direct elimination). Pools are fenced to 5.
pub const DEFAULT_BOUT_TARGET: u32 = 15;

/// What an event means for the bout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
// `BoutEventKind` in the OpenAPI document, beside the API's own `EventKind` (what happened to a session).
#[schema(as = BoutEventKind)]
pub enum EventKind {
    /// `touch_left`, `touch_right`.
    Touch,
    /// `double`: both sides at once.
    Double,
    /// `off_target_left`, `off_target_right`: a white light.
    OffTarget,
    /// `card_left`, `card_right`.
    Card,
    /// `halt`.
    Halt,
    /// `start`, `end`.
    Period,
    /// `priority_left`, `priority_right`.
    Priority,
    /// Any other name.
    Other,
}

/// The side an event concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Left,
    Right,
    Both,
}

/// A card's colour. A red card gives the opponent a touch; black excludes the fencer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardColor {
    Yellow,
    Red,
    Black,
}

/// A score: touches of the left and of the right fencer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Score {
    pub left: u32,
    pub right: u32,
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.left, self.right)
    }
}

impl Score {
    /// Parses `L-R`, e.g. `3-2`.
    pub fn parse(text: &str) -> Option<Self> {
        let (l, r) = text.split_once('-')?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(l) || !digits(r) {
            return None;
        }
        Some(Self {
            left: l.parse().ok()?,
            right: r.parse().ok()?,
        })
    }

    /// This score with `left` and `right` more touches.
    fn plus(self, left: u32, right: u32) -> Self {
        Self {
            left: self.left.saturating_add(left),
            right: self.right.saturating_add(right),
        }
    }
}

/// What one event says, read from its name and fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meaning {
    pub kind: EventKind,
    pub side: Option<Side>,
    /// `color=` of a card, when it is one of the three.
    pub color: Option<CardColor>,
}

/// The value of field `key` of `event`, if it has one.
pub fn field<'a>(event: &'a SignalEvent, key: &str) -> Option<&'a str> {
    event
        .fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// What `event` means, from its name (and a card's `color=`).
pub fn meaning(event: &SignalEvent) -> Meaning {
    let sided = |rest: &str| match rest {
        "left" => Some(Side::Left),
        "right" => Some(Side::Right),
        _ => None,
    };
    let name = event.name.as_str();
    let (kind, side) = match name {
        "double" => (EventKind::Double, Some(Side::Both)),
        "halt" => (EventKind::Halt, None),
        "start" | "end" => (EventKind::Period, None),
        _ => {
            let prefixed = [
                ("touch_", EventKind::Touch),
                ("off_target_", EventKind::OffTarget),
                ("card_", EventKind::Card),
                ("priority_", EventKind::Priority),
            ];
            prefixed
                .iter()
                .find_map(|(prefix, kind)| {
                    name.strip_prefix(prefix)
                        .and_then(sided)
                        .map(|side| (*kind, Some(side)))
                })
                .unwrap_or((EventKind::Other, None))
        }
    };
    let color = match (kind, field(event, "color")) {
        (EventKind::Card, Some("yellow")) => Some(CardColor::Yellow),
        (EventKind::Card, Some("red")) => Some(CardColor::Red),
        (EventKind::Card, Some("black")) => Some(CardColor::Black),
        _ => None,
    };
    Meaning { kind, side, color }
}

/// One event of the bout's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position of the event in the track's events.
    pub event: usize,
    pub kind: EventKind,
    pub side: Option<Side>,
    /// A card's colour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<CardColor>,
    /// The score after the event.
    pub score: Score,
    /// Whether the score is the event's own `score=` (true) or computed from the touches.
    pub score_given: bool,
    /// `period=` of a `start`/`end`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<u32>,
    /// `clock=` of the event, as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
}

/// A score that does not follow, or a field that cannot be read: shown, never silently taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    /// Position of the event in the track's events.
    pub event: usize,
    /// Line of the signal file.
    pub line: usize,
    /// What is wrong, for a person.
    pub reason: String,
}

/// A touch where a review is usual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub event: usize,
    pub line: usize,
    pub reason: String,
}

/// The bout's score timeline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// Touches to win the bout (`--bout-target`).
    pub target: u32,
    /// Every event of a known kind, in file order.
    pub entries: Vec<Entry>,
    pub flags: Vec<Flag>,
    pub marks: Vec<Mark>,
    /// The score after the last event.
    pub final_score: Score,
}

impl Timeline {
    /// The timeline of `track` in a bout to `target` touches.
    pub fn of(track: &SignalTrack, target: u32) -> Self {
        let mut timeline = Self {
            target,
            ..Self::default()
        };
        let mut score = Score::default();
        let deciding = Score {
            left: target.saturating_sub(1),
            right: target.saturating_sub(1),
        };
        for (index, event) in track.events.iter().enumerate() {
            let meaning = meaning(event);
            let mut flag = |reason: String| {
                timeline.flags.push(Flag {
                    event: index,
                    line: event.line,
                    reason,
                })
            };
            // The touches the event gives (left, right), and how a person says it.
            let gain = match (meaning.kind, meaning.side) {
                (EventKind::Touch, Some(Side::Left)) => (1, 0),
                (EventKind::Touch, Some(Side::Right)) => (0, 1),
                (EventKind::Double, _) => (1, 1),
                (EventKind::Card, side) => {
                    if meaning.color.is_none() {
                        flag(format!(
                            "{} has no readable color= (write color=yellow, red or black)",
                            event.name
                        ));
                    }
                    // A red card is a penalty touch for the opponent.
                    match (meaning.color, side) {
                        (Some(CardColor::Red), Some(Side::Left)) => (0, 1),
                        (Some(CardColor::Red), Some(Side::Right)) => (1, 0),
                        _ => (0, 0),
                    }
                }
                _ => (0, 0),
            };
            if meaning.kind == EventKind::Other {
                continue;
            }
            let before = score;
            let expected = score.plus(gain.0, gain.1);
            let written = field(event, "score");
            let given = written.and_then(Score::parse);
            match (written, given) {
                (Some(text), None) => flag(format!(
                    "cannot read score={text}: write the score after the event as L-R, e.g. \
                     score=3-2; {expected} (computed from the touches) is used"
                )),
                (_, Some(given)) if given != expected => flag(if gain == (0, 0) {
                    format!(
                        "{} gives score={given} but no touch was scored since {before}",
                        event.name
                    )
                } else {
                    format!(
                        "{} gives score={given} but {before} and {} make {expected}",
                        event.name,
                        describe_gain(gain)
                    )
                }),
                _ => {}
            }
            // The box's own score is what it showed: later touches follow from it.
            score = given.unwrap_or(expected);
            if gain != (0, 0) && before == deciding && target > 0 {
                timeline.marks.push(Mark {
                    event: index,
                    line: event.line,
                    reason: format!(
                        "deciding touch at {before} in a bout to {target}: a review is usual"
                    ),
                });
            }
            let period = match meaning.kind {
                EventKind::Period => field(event, "period").and_then(|p| p.parse().ok()),
                _ => None,
            };
            timeline.entries.push(Entry {
                event: index,
                kind: meaning.kind,
                side: meaning.side,
                color: meaning.color,
                score,
                score_given: given.is_some(),
                period,
                clock: field(event, "clock").map(str::to_string),
            });
        }
        timeline.final_score = score;
        timeline
    }
}

fn describe_gain(gain: (u32, u32)) -> &'static str {
    match gain {
        (1, 1) => "a double",
        (1, 0) => "a touch for the left",
        _ => "a touch for the right",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(text: &str, target: u32) -> Timeline {
        Timeline::of(&SignalTrack::parse(text).unwrap(), target)
    }

    fn scores(t: &Timeline) -> Vec<String> {
        t.entries.iter().map(|e| e.score.to_string()).collect()
    }

    #[test]
    fn names_have_a_kind_and_a_side() {
        let track = SignalTrack::parse(
            "0 start\n1 touch_left\n2 touch_right\n3 double\n4 off_target_left\n5 \
             off_target_right\n6 halt\n7 card_right color=yellow\n8 priority_left\n9 end\n10 \
             touch_middle\n11 buzz\n",
        )
        .unwrap();
        let seen: Vec<(EventKind, Option<Side>)> = track
            .events
            .iter()
            .map(|e| {
                let m = meaning(e);
                (m.kind, m.side)
            })
            .collect();
        use EventKind::*;
        assert_eq!(
            seen,
            [
                (Period, None),
                (Touch, Some(Side::Left)),
                (Touch, Some(Side::Right)),
                (Double, Some(Side::Both)),
                (OffTarget, Some(Side::Left)),
                (OffTarget, Some(Side::Right)),
                (Halt, None),
                (Card, Some(Side::Right)),
                (Priority, Some(Side::Left)),
                (Period, None),
                (Other, None),
                (Other, None),
            ]
        );
        assert_eq!(meaning(&track.events[7]).color, Some(CardColor::Yellow));
    }

    #[test]
    fn scores_without_a_field_are_computed_from_the_touches() {
        let t = timeline(
            "0 start period=1\n1 touch_left\n2 off_target_right\n3 touch_right\n4 double\n5 \
             halt clock=2:41\n6 end period=1\n7 other\n",
            15,
        );
        assert_eq!(
            scores(&t),
            ["0-0", "1-0", "1-0", "1-1", "2-2", "2-2", "2-2"]
        );
        assert!(t.entries.iter().all(|e| !e.score_given));
        assert_eq!(t.flags, []);
        assert_eq!(t.final_score, Score { left: 2, right: 2 });
        assert_eq!(t.entries[0].period, Some(1));
        assert_eq!(t.entries[5].clock.as_deref(), Some("2:41"));
        // The plain event is not in the timeline.
        assert_eq!(t.entries.last().unwrap().event, 6);
    }

    #[test]
    fn a_score_that_does_not_follow_is_flagged_and_then_followed() {
        let t = timeline(
            "1 touch_left score=1-0\n2 touch_left score=1-2\n3 touch_right score=1-3\n",
            15,
        );
        assert_eq!(scores(&t), ["1-0", "1-2", "1-3"]);
        assert_eq!(t.flags.len(), 1, "{:?}", t.flags);
        assert_eq!((t.flags[0].event, t.flags[0].line), (1, 2));
        assert_eq!(
            t.flags[0].reason,
            "touch_left gives score=1-2 but 1-0 and a touch for the left make 2-0"
        );
    }

    #[test]
    fn a_double_must_add_one_to_both() {
        let t = timeline("1 double score=1-1\n2 double score=2-1\n", 15);
        assert_eq!(t.flags.len(), 1);
        assert_eq!(
            t.flags[0].reason,
            "double gives score=2-1 but 1-1 and a double make 2-2"
        );
    }

    #[test]
    fn a_score_change_without_a_touch_and_an_unreadable_score_are_flagged() {
        let t = timeline(
            "1 touch_left\n2 halt score=0-0\n3 touch_right score=one\n",
            15,
        );
        assert_eq!(scores(&t), ["1-0", "0-0", "0-1"]);
        assert_eq!(
            t.flags[0].reason,
            "halt gives score=0-0 but no touch was scored since 1-0"
        );
        assert!(t.flags[1].reason.starts_with("cannot read score=one"));
        assert!(t.flags[1].reason.contains("0-1 (computed"));
    }

    #[test]
    fn cards_have_colours_and_a_red_card_is_a_touch_for_the_opponent() {
        let t = timeline(
            "1 card_left color=yellow\n2 card_left color=red\n3 card_right color=red \
             score=1-1\n4 card_right\n",
            15,
        );
        assert_eq!(scores(&t), ["0-0", "0-1", "1-1", "1-1"]);
        let colours: Vec<Option<CardColor>> = t.entries.iter().map(|e| e.color).collect();
        assert_eq!(
            colours,
            [
                Some(CardColor::Yellow),
                Some(CardColor::Red),
                Some(CardColor::Red),
                None
            ]
        );
        assert_eq!(t.flags.len(), 1);
        assert!(t.flags[0]
            .reason
            .contains("card_right has no readable color="));
    }

    #[test]
    fn the_deciding_touch_is_marked_for_the_configured_target() {
        let text = "1 touch_left score=4-3\n2 touch_right score=4-4\n3 off_target_left\n4 \
                    touch_right score=4-5\n";
        let t = timeline(text, 5);
        assert_eq!(t.marks.len(), 1, "{:?}", t.marks);
        assert_eq!((t.marks[0].event, t.marks[0].line), (3, 4));
        assert_eq!(
            t.marks[0].reason,
            "deciding touch at 4-4 in a bout to 5: a review is usual"
        );
        // In a bout to 15 nothing here is deciding.
        assert_eq!(timeline(text, 15).marks, []);
        // A double at 14-14 is marked too.
        let t = timeline("1 touch_left score=14-14\n2 double\n", 15);
        assert_eq!(t.marks.len(), 1);
        assert_eq!(t.marks[0].event, 1);
    }

    #[test]
    fn scores_parse_strictly() {
        assert_eq!(Score::parse("3-2"), Some(Score { left: 3, right: 2 }));
        for bad in ["", "3", "3-", "-2", "a-b", "3-2-1", "+3-2", "99999-1"] {
            assert_eq!(Score::parse(bad), None, "{bad:?}");
        }
    }
}
