//! Comparisons made run by run. kstreams and its baseline run in the same
//! run, on the same input, one right after the other, the order swapped
//! from one run to the next; each run gives a ratio, and the figure is
//! the median of those ratios with their spread (lowest to highest). Not
//! a ratio of two medians measured apart: the machine drifts between
//! runs (a shared 2-core machine: absolute figures swing by up to 1.5x),
//! and within a pair both sides see the same moment of it.

use crate::measure::Measure;

/// One run of a comparison.
#[derive(Clone, Copy)]
pub struct Pair {
    /// The run it was measured in (1-based).
    pub run: usize,
    pub kstreams: Measure,
    pub baseline: Measure,
    /// Whether the baseline ran first.
    pub baseline_first: bool,
}

/// The median of some per-run figures, and their lowest and highest.
#[derive(Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no figures. With an even count, the median is the mean
    /// of the two middle ones.
    pub fn of(mut values: Vec<f64>) -> Option<Spread> {
        values.retain(|value| value.is_finite());
        values.sort_by(f64::total_cmp);
        let (first, last) = (*values.first()?, *values.last()?);
        let middle = values.len() / 2;
        let median = match values.len() % 2 {
            1 => values[middle],
            _ => (values[middle - 1] + values[middle]) / 2.0,
        };
        Some(Spread {
            median,
            min: first,
            max: last,
        })
    }

    /// `29.2 (25.3-30.2)`, with `decimals` decimals.
    pub fn show(&self, decimals: usize) -> String {
        format!(
            "{:.*} ({:.*}-{:.*})",
            decimals, self.median, decimals, self.min, decimals, self.max
        )
    }
}

/// The spread of `ratio` over `pairs` (pairs it has no figure for left out).
pub fn spread(pairs: &[Pair], ratio: impl Fn(&Pair) -> Option<f64>) -> Option<Spread> {
    Spread::of(pairs.iter().filter_map(ratio).collect())
}

/// kstreams' throughput ÷ the baseline's.
pub fn rate_ratio(pair: &Pair) -> Option<f64> {
    Some(pair.kstreams.rate() / pair.baseline.rate())
}

/// kstreams' CPU per message ÷ the baseline's.
pub fn cpu_ratio(pair: &Pair) -> Option<f64> {
    Some(pair.kstreams.cpu_per_message_us()? / pair.baseline.cpu_per_message_us()?)
}

/// The baseline's CPU per message ÷ kstreams': how many times less kstreams
/// spends (the Quix Streams target's direction).
pub fn cpu_times_less(pair: &Pair) -> Option<f64> {
    cpu_ratio(pair).map(|ratio| 1.0 / ratio)
}

/// The baseline's time ÷ kstreams' (recovery: how many times faster).
pub fn time_times_less(pair: &Pair) -> Option<f64> {
    Some(pair.baseline.seconds / pair.kstreams.seconds)
}
