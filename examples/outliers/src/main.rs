//! Finds outliers with numpy from Rust: 1000 seeded random values in [0, 40) with three planted
//! spikes go to a bundled Python script, which answers with the spikes' indices.
//!
//! Build and run with `cargo pybundle run --manifest-path examples/outliers/Cargo.toml`;
//! it prints `[7, 113, 835]`.

use std::process::ExitCode;

/// Where the spikes go, and their values (all far above the mean of about 20).
const SPIKES: [(usize, f64); 3] = [(7, 97.3), (113, 92.1), (835, 93.2)];

fn main() -> ExitCode {
    match run() {
        Ok(indices) => {
            println!("{indices:?}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("outliers: {}", err.report());
            ExitCode::FAILURE
        }
    }
}

fn run() -> pybundle_runtime::Result<Vec<usize>> {
    let mut values = random_values(1000, 0x5eed);
    for (index, value) in SPIKES {
        values[index] = value;
    }
    let env = pybundle_runtime::Bundle::embedded()?
        .progress_to_stderr()
        .ready()?;
    let out = env
        .script("outliers")
        .args(["--sigma", "2"])
        .input(&values)
        .run::<Vec<usize>>()?;
    Ok(out.reply)
}

/// `n` values uniform in [0, 40) from a xorshift64* generator: reproducible without a crate.
fn random_values(n: usize, seed: u64) -> Vec<f64> {
    let mut state = seed.max(1);
    (0..n)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
            // 53 random bits scaled into [0, 1), then to [0, 40).
            (bits as f64 / (1u64 << 53) as f64) * 40.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_seeded_and_in_range() {
        let a = random_values(1000, 0x5eed);
        assert_eq!(a, random_values(1000, 0x5eed));
        assert!(a.iter().all(|v| (0.0..40.0).contains(v)));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!((17.0..23.0).contains(&mean), "mean {mean}");
    }
}
