//! The report's SVG plots, drawn with plotters' SVG backend. Text is written as SVG `<text>`
//! (no font is read at build or run time: the viewer's fonts render it).

use std::path::Path;

use plotters::prelude::*;

use crate::pb::BudgetLine;
use crate::report::StrategySummary;
use crate::strategy::Strategy;

type PlotResult = Result<(), Box<dyn std::error::Error>>;

fn color(s: Strategy) -> RGBColor {
    match s {
        Strategy::Fixed => RGBColor(214, 39, 40),
        Strategy::Nested => RGBColor(31, 119, 180),
        Strategy::None => RGBColor(127, 127, 127),
    }
}

/// Latency CDF per strategy, log-scale x in ms.
pub fn cdf(path: &Path, results: &[StrategySummary]) -> PlotResult {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = results
        .iter()
        .flat_map(|r| r.cdf_ms.last().copied())
        .fold(10.0_f64, f64::max)
        * 1.2;
    let mut chart = ChartBuilder::on(&root)
        .caption("Latency CDF per strategy", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((1.0_f64..max).log_scale(), 0.0_f64..1.0)?;
    chart
        .configure_mesh()
        .x_desc("latency from intended send, ms (log)")
        .y_desc("share of orders")
        .draw()?;
    for r in results {
        let n = r.cdf_ms.len().max(1) as f64;
        let pts: Vec<(f64, f64)> = r
            .cdf_ms
            .iter()
            .enumerate()
            .map(|(i, v)| (v.max(1.0), (i + 1) as f64 / n))
            .collect();
        let c = color(r.strategy);
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
            .label(r.strategy.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Goodput over time per strategy, with the fault windows shaded.
pub fn goodput(
    path: &Path,
    results: &[StrategySummary],
    windows: &[(&str, std::time::Duration, std::time::Duration)],
) -> PlotResult {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let t_max = results
        .iter()
        .flat_map(|r| r.timeline.last().map(|b| b.t))
        .fold(1.0_f64, f64::max)
        + 0.5;
    let y_max = results
        .iter()
        .flat_map(|r| r.timeline.iter().map(|b| b.ok))
        .fold(1.0_f64, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption("Goodput over time (paid orders/s)", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0_f64..t_max, 0.0_f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("time since the load started, s")
        .y_desc("paid orders / s")
        .draw()?;
    for (name, a, b) in windows {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(a.as_secs_f64(), 0.0), (b.as_secs_f64(), y_max)],
            RGBColor(255, 200, 0).mix(0.25).filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{name} partitioned"),
            (a.as_secs_f64(), y_max * 0.97),
            ("sans-serif", 14),
        )))?;
    }
    for r in results {
        let c = color(r.strategy);
        let pts: Vec<(f64, f64)> = r.timeline.iter().map(|b| (b.t, b.ok)).collect();
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))?
            .label(r.strategy.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One order's budget waterfall: per ledger line, the budget granted (light) and the time used
/// (dark), from the order's arrival.
pub fn waterfall(path: &Path, order_id: &str, lines: &[BudgetLine]) -> PlotResult {
    let height = 120 + 48 * lines.len() as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let end_ms = lines
        .iter()
        .map(|l| (l.started_us + l.granted_us.max(l.used_us)) as f64 / 1e3)
        .fold(100.0_f64, f64::max)
        * 1.05;
    let n = lines.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Budget waterfall of order {order_id}"),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(20)
        .build_cartesian_2d(0.0_f64..end_ms, 0.0_f64..n)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .x_desc("ms since the order arrived")
        .draw()?;
    for (i, l) in lines.iter().enumerate() {
        let y0 = n - i as f64 - 0.85;
        let y1 = n - i as f64 - 0.15;
        let start = l.started_us as f64 / 1e3;
        let granted = start + l.granted_us as f64 / 1e3;
        let used = start + l.used_us.max(0) as f64 / 1e3;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(start, y0), (granted, y1)],
            RGBColor(158, 202, 225).filled(),
        )))?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(start, y0 + 0.15), (used.max(start + 0.2), y1 - 0.15)],
            RGBColor(8, 81, 156).filled(),
        )))?;
        let saw = if l.callee_saw_us >= 0 {
            format!(", callee saw {:.0} ms", l.callee_saw_us as f64 / 1e3)
        } else {
            String::new()
        };
        chart.draw_series(std::iter::once(Text::new(
            format!(
                "{}: granted {:.0} ms, used {:.0} ms ({}){saw}",
                l.name,
                l.granted_us as f64 / 1e3,
                l.used_us.max(0) as f64 / 1e3,
                l.outcome
            ),
            (start + 2.0, y1 + 0.02),
            ("sans-serif", 13),
        )))?;
    }
    root.present()?;
    Ok(())
}
