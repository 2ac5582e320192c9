//! Hand-written SVG line charts for the benchmark commands: one panel per figure, stacked
//! vertically, sharing the x axis (time or step). No dependency; the output opens in any
//! browser.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

/// One figure over the run.
pub struct Panel {
    /// Its name (the panel's title).
    pub name: String,
    /// (x, y) points in x order.
    pub points: Vec<(f64, f64)>,
}

impl Panel {
    /// An empty panel.
    pub fn new(name: &str) -> Panel {
        Panel {
            name: name.to_string(),
            points: Vec::new(),
        }
    }
}

const WIDTH: f64 = 720.0;
const PANEL_H: f64 = 130.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 40.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG text of `panels` under `title`.
pub fn render(title: &str, x_label: &str, panels: &[Panel]) -> String {
    let height = TOP + panels.len() as f64 * (PANEL_H + GAP) + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="13">{}</text>"#,
        esc(title)
    );
    let x_max = panels
        .iter()
        .flat_map(|p| p.points.iter().map(|q| q.0))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let plot_w = WIDTH - LEFT - RIGHT;
    for (i, p) in panels.iter().enumerate() {
        let y0 = TOP + i as f64 * (PANEL_H + GAP);
        let y_max = p.points.iter().map(|q| q.1).fold(0.0f64, f64::max);
        let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="{}" font-weight="bold">{}</text><rect x="{LEFT}" y="{y0}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#999"/>"##,
            y0 - 5.0,
            esc(&p.name)
        );
        for frac in [0.0, 0.5, 1.0] {
            let y = y0 + PANEL_H * (1.0 - frac);
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{:.3}</text>"#,
                LEFT - 5.0,
                y + 4.0,
                y_max * frac
            );
        }
        let pts: Vec<String> = p
            .points
            .iter()
            .map(|&(x, y)| {
                let px = LEFT + plot_w * x / x_max;
                let py = y0 + PANEL_H * (1.0 - y / y_max);
                format!("{px:.1},{py:.1}")
            })
            .collect();
        let _ = writeln!(
            s,
            r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{}"/>"##,
            pts.join(" ")
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{} ({x_max:.1})</text>"#,
            WIDTH - RIGHT,
            y0 + PANEL_H + 14.0,
            esc(x_label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Writes the chart to `path`.
pub fn write_svg(path: &Path, title: &str, x_label: &str, panels: &[Panel]) -> Result<()> {
    std::fs::write(path, render(title, x_label, panels))
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_points_into_their_panel() {
        let mut p = Panel::new("a<b");
        p.points = vec![(0.0, 0.0), (10.0, 5.0)];
        let svg = render("t", "s", &[p]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a&lt;b"));
        // x=10 is the right edge; y=5 is 1/1.1 of the panel height from its bottom.
        let top = TOP + PANEL_H * (1.0 - 1.0 / 1.1);
        assert!(
            svg.contains(&format!("{:.1},{top:.1}", WIDTH - RIGHT)),
            "{svg}"
        );
        assert!(svg.contains(&format!("{LEFT:.1},{:.1}", TOP + PANEL_H)));
    }
}
