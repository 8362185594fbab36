//! The motion timeline's layout: one set of numbers for its two drawings, report.html's (SVG
//! written here, `report_html.rs`) and the dashboard's (`server/web/timeline.js`, which
//! imports them from `/timeline-layout.js`, a module written from [`LAYOUT`] by
//! [`javascript_module`]).

use serde::Serialize;

/// Where things go on the plot (in SVG user units: the drawing scales to the page width),
/// and how much of it is drawn.
#[derive(Debug, Serialize)]
pub struct TimelineLayout {
    /// The plot's coordinate system.
    pub width: f64,
    pub height: f64,
    /// Margins around the plotted area (axis labels, event markers, time ticks).
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
    /// The score track's height, under the plot.
    pub score_track_height: f64,
    /// At most this many points are drawn; longer series keep each bucket's maximum.
    pub max_points: usize,
    /// Time ticks at most.
    pub max_ticks: usize,
    /// "Nice" tick steps in seconds: the first that gives at most 10 ticks (whole hours past).
    pub tick_steps: &'static [f64],
    /// The plot's top is at least the threshold times this, then this much above the peak.
    pub threshold_headroom: f64,
    pub peak_headroom: f64,
    /// Seconds before where an action began that a click on an event opens the video at.
    pub pre_roll_s: f64,
}

/// The one layout of the motion timeline.
pub const LAYOUT: TimelineLayout = TimelineLayout {
    width: 1000.0,
    height: 260.0,
    left: 46.0,
    right: 24.0,
    top: 30.0,
    bottom: 30.0,
    score_track_height: 56.0,
    max_points: 1000,
    max_ticks: 12,
    tick_steps: &[
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ],
    threshold_headroom: 1.25,
    peak_headroom: 1.05,
    pre_roll_s: 1.0,
};

/// `/timeline-layout.js`: [`LAYOUT`] as an ES module (`export const LAYOUT = {...}`).
pub fn javascript_module() -> String {
    let json = serde_json::to_string(&LAYOUT).unwrap_or_else(|_| "{}".to_string());
    format!(
        "// The motion timeline's layout, written by the server from the numbers report.html is \
         drawn with\n// (server/src/pipeline/timeline_layout.rs).\nexport const LAYOUT = \
         Object.freeze({json});\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_exports_the_layout_as_json() {
        let module = javascript_module();
        let json = module
            .split_once("Object.freeze(")
            .and_then(|(_, rest)| rest.strip_suffix(");\n"))
            .unwrap_or_default();
        let parsed: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        assert_eq!(parsed["width"], 1000.0);
        assert_eq!(parsed["max_points"], 1000);
        assert_eq!(parsed["tick_steps"].as_array().map(Vec::len), Some(15));
        assert!(!module.contains("://"));
    }
}
