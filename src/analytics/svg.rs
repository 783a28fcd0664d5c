//! Charts drawn on the server as SVG strings, so the dashboard embeds them without a script.
//! Colours come from `currentColor` and CSS classes (`chart`, `bar`, `axis`, `label`), so the
//! page's stylesheet decides the look; the inline defaults keep a bare file readable.

use std::fmt::Write;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 30.0;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The smallest "nice" axis top (1, 2 or 5 times a power of ten) at or above `max`.
fn nice_ceiling(max: u64) -> u64 {
    if max <= 5 {
        return 5;
    }
    let mut step = 1u64;
    loop {
        for m in [1u64, 2, 5] {
            let v = step.saturating_mul(m).saturating_mul(10);
            if v >= max {
                return v;
            }
        }
        match step.checked_mul(10) {
            Some(s) => step = s,
            None => return max,
        }
    }
}

/// A bar chart of labelled values. Shows at most `max_labels` x-axis labels (evenly spaced).
fn bars(title: &str, points: &[(String, u64)], max_labels: usize) -> String {
    let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let top = nice_ceiling(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let n = points.len().max(1) as f64;
    let slot = plot_w / n;
    let bar_w = (slot * 0.8).max(1.0);
    let title = escape(title);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-labelledby=\"chart-title\" \
         font-family=\"sans-serif\" font-size=\"11\">\
         <title id=\"chart-title\">{title}</title>\
         <text class=\"label\" x=\"{LEFT}\" y=\"16\" font-size=\"13\" fill=\"currentColor\">{title}</text>"
    );
    for i in 0..=4 {
        let value = top * i / 4;
        let y = TOP + plot_h - plot_h * (i as f64) / 4.0;
        let _ = write!(
            svg,
            "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{x2:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" \
             stroke=\"currentColor\" stroke-opacity=\"0.15\"/>\
             <text class=\"label\" x=\"{lx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\" \
             fill=\"currentColor\">{value}</text>",
            x2 = WIDTH - RIGHT,
            lx = LEFT - 6.0,
            ty = y + 4.0,
        );
    }
    let every = points.len().div_ceil(max_labels.max(1)).max(1);
    for (i, (label, value)) in points.iter().enumerate() {
        let h = if top == 0 {
            0.0
        } else {
            plot_h * (*value as f64) / (top as f64)
        };
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let y = TOP + plot_h - h;
        let label = escape(label);
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" \
             fill=\"currentColor\" fill-opacity=\"0.7\"><title>{label}: {value}</title></rect>"
        );
        if i % every == 0 {
            let _ = write!(
                svg,
                "<text class=\"label\" x=\"{cx:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\" \
                 fill=\"currentColor\">{label}</text>",
                cx = x + bar_w / 2.0,
                ly = HEIGHT - BOTTOM + 16.0,
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// A per-day series (dates as `YYYY-MM-DD`; the axis shows `MM-DD`).
pub fn daily_series(title: &str, points: &[(String, u64)]) -> String {
    let short: Vec<(String, u64)> = points
        .iter()
        .map(|(d, v)| (d.get(5..).unwrap_or(d).to_string(), *v))
        .collect();
    bars(title, &short, 10)
}

/// Twenty-four bars, one per local hour.
pub fn hour_histogram(title: &str, hours: &[u64; 24]) -> String {
    let points: Vec<(String, u64)> = hours
        .iter()
        .enumerate()
        .map(|(h, v)| (format!("{h:02}"), *v))
        .collect();
    bars(title, &points, 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(0), 5);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(43), 50);
        assert_eq!(nice_ceiling(51), 100);
        assert_eq!(nice_ceiling(1001), 2000);
    }

    #[test]
    fn charts_are_well_formed_and_escaped() {
        let svg = daily_series(
            "Conversations <per day> & more",
            &[("2024-05-01".into(), 3), ("2024-05-02".into(), 0)],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("Conversations &lt;per day&gt; &amp; more"));
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("<title>05-01: 3</title>"));
        let hist = hour_histogram("Busiest hours", &[1; 24]);
        assert_eq!(hist.matches("<rect").count(), 24);
        assert_eq!(hist.matches("<svg").count(), 1);
    }
}
