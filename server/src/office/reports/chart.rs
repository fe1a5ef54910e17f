//! The SVG chart of a report (plotters, SVG backend only).

use super::*;

/// A bar's label in the chart (the keys are too long for ten bars).
pub(crate) fn short_label(kpi: &str) -> &str {
    match kpi {
        "first_time_fix" => "first-time fix",
        "on_site_fix" => "on-site fix",
        "response_on_time" => "response",
        "resolution_on_time" => "resolution",
        "callback_on_time" => "callbacks",
        "complaint_rate" => "complaints",
        other => other,
    }
}

/// The SVG: the percentage KPIs against their targets (bars, the target a
/// red tick), and their trend over the periods (one line each).
pub fn render_svg(r: &Report) -> Result<String, String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let shown: Vec<&KpiLine> = r.kpis.iter().filter(|k| k.unit == Unit::Percent).collect();
    let trends: Vec<&Trend> = r
        .trends
        .iter()
        .filter(|t| t.unit == Unit::Percent)
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 900)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (top, bottom) = root.split_vertically(450);

        let n = shown.len().max(1);
        let mut bars = ChartBuilder::on(&top)
            .caption(
                format!("KPIs against targets, {}", r.period.label),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(70)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..n as f64, 0f64..100f64)
            .map_err(|e| err(&e))?;
        let keys: Vec<&str> = shown.iter().map(|k| k.kpi).collect();
        bars.configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 1e-6 && i < keys.len() {
                    short_label(keys[i]).to_string()
                } else {
                    String::new()
                }
            })
            .y_max_light_lines(1)
            .y_desc("%")
            .draw()
            .map_err(|e| err(&e))?;
        bars.draw_series(shown.iter().enumerate().map(|(i, k)| {
            let v = k.value.unwrap_or(0.0);
            let colour = match k.met {
                Some(true) => RGBColor(46, 139, 87),
                Some(false) => RGBColor(205, 92, 92),
                None => RGBColor(160, 160, 160),
            };
            Rectangle::new(
                [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, v)],
                colour.filled(),
            )
        }))
        .map_err(|e| err(&e))?;
        bars.draw_series(shown.iter().enumerate().filter_map(|(i, k)| {
            let t = k.target?;
            Some(PathElement::new(
                vec![(i as f64 + 0.05, t), (i as f64 + 0.95, t)],
                RED.stroke_width(3),
            ))
        }))
        .map_err(|e| err(&e))?;
        bars.draw_series(
            shown
                .iter()
                .enumerate()
                .filter(|(_, k)| k.value.is_none())
                .map(|(i, _)| {
                    Text::new(
                        "n/a".to_string(),
                        (i as f64 + 0.4, 4.0),
                        ("sans-serif", 14).into_font(),
                    )
                }),
        )
        .map_err(|e| err(&e))?;

        let periods = trends.first().map_or(1, |t| t.points.len()).max(2);
        let labels: Vec<String> = trends
            .first()
            .map(|t| t.points.iter().map(|p| p.period.clone()).collect())
            .unwrap_or_default();
        let mut lines = ChartBuilder::on(&bottom)
            .caption("Trend over the periods", ("sans-serif", 22))
            .margin(12)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..(periods - 1) as f64, 0f64..100f64)
            .map_err(|e| err(&e))?;
        lines
            .configure_mesh()
            .x_labels(periods)
            .x_label_formatter(&|x| {
                let i = x.round() as usize;
                if (x - x.round()).abs() < 1e-6 {
                    labels.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_max_light_lines(1)
            .y_max_light_lines(1)
            .y_desc("%")
            .draw()
            .map_err(|e| err(&e))?;
        const COLOURS: [RGBColor; 9] = [
            RGBColor(31, 119, 180),
            RGBColor(255, 127, 14),
            RGBColor(44, 160, 44),
            RGBColor(214, 39, 40),
            RGBColor(148, 103, 189),
            RGBColor(140, 86, 75),
            RGBColor(227, 119, 194),
            RGBColor(127, 127, 127),
            RGBColor(23, 190, 207),
        ];
        for (i, t) in trends.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let points: Vec<(f64, f64)> = t
                .points
                .iter()
                .enumerate()
                .filter_map(|(x, p)| Some((x as f64, p.value?)))
                .collect();
            // Dots too: a KPI with a value in one period only has no line.
            lines
                .draw_series(points.iter().map(|p| Circle::new(*p, 4, colour.filled())))
                .map_err(|e| err(&e))?;
            lines
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(short_label(t.kpi))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        lines
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}
