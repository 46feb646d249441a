//! Options of `glstream compare`.

use std::path::PathBuf;

use clap::Args;

/// Options of `glstream compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The approved image (PNG).
    pub expected: PathBuf,

    /// The image under test (PNG).
    pub actual: PathBuf,

    /// Largest per-channel difference (0-255) a pixel may have and still match.
    #[arg(long, default_value_t = 0)]
    pub tolerance: u8,

    /// How many pixels may exceed the tolerance: a count, or a percentage like 0.5%.
    #[arg(long, default_value = "0", value_parser = parse_outliers)]
    pub max_outliers: Outliers,

    /// Write a diff image here (pixels over tolerance in red). By default one is written next to
    /// ACTUAL, as NAME.diff.png, when the images do not match.
    #[arg(long)]
    pub diff: Option<PathBuf>,
}

/// A bound on pixels over tolerance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outliers {
    /// At most this many pixels.
    Count(u64),
    /// At most this percentage of the image.
    Percent(f64),
}

impl Outliers {
    pub fn allowed(self, total: u64) -> u64 {
        match self {
            Outliers::Count(n) => n,
            Outliers::Percent(p) => (total as f64 * p / 100.0).floor() as u64,
        }
    }
}

fn parse_outliers(text: &str) -> Result<Outliers, String> {
    let bad = || format!("'{text}' is not a pixel count or a percentage like 0.5%");
    match text.strip_suffix('%') {
        Some(p) => {
            let p: f64 = p.parse().map_err(|_| bad())?;
            if !(0.0..=100.0).contains(&p) {
                return Err(bad());
            }
            Ok(Outliers::Percent(p))
        }
        None => text.parse().map(Outliers::Count).map_err(|_| bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outliers_parse_as_count_or_percent() {
        assert_eq!(parse_outliers("12"), Ok(Outliers::Count(12)));
        assert_eq!(parse_outliers("0.5%"), Ok(Outliers::Percent(0.5)));
        assert!(parse_outliers("150%").is_err());
        assert!(parse_outliers("x").is_err());
        assert_eq!(Outliers::Percent(1.0).allowed(1000), 10);
    }
}
