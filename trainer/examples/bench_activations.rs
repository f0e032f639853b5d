//! Times each built-in activation's slice loops, single-threaded: `forward_slice` and
//! `backward_slice` over 1M pre-activations spread over [-8, 8), median of 20 repetitions, in
//! ns per element and as a ratio to relu (the cheapest; the transcendental ones are measured
//! against it).
//!
//! `cargo run --release -p necrosis --example bench_activations`
//!
//! On the 2-core development machine (AVX2, shared with another build, so ±30 %), forward /
//! backward ns per element: relu 0.07–0.1 / 0.12–0.15; with libm's scalar calls softplus
//! 8.7–13 / 7.5–13, tanh 13–19 / 14–20, gelu 22–25 / 23–27; on `ops::fast_math`'s vectorised
//! functions softplus 1.7 / 0.8, tanh 0.75 / 0.8, gelu 1.1 / 1.5 (issue #15).

use std::hint::black_box;
use std::time::Instant;

use necrosis::activation::{ActivationFunction, BUILTINS};

const N: usize = 1 << 20;
const REPETITIONS: usize = 20;

fn median_ns_per_element(mut run: impl FnMut()) -> f64 {
    run(); // warm the caches and the page tables
    let mut times: Vec<f64> = (0..REPETITIONS)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_nanos() as f64 / N as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[REPETITIONS / 2]
}

fn main() {
    // A fixed LCG, so that every run times the same inputs.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let z: Vec<f32> = (0..N)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 16.0 - 8.0
        })
        .collect();
    let grad_h: Vec<f32> = z.iter().map(|x| 0.5 - 0.1 * x).collect();
    let mut h = vec![0.0f32; N];
    let mut grad_z = vec![0.0f32; N];

    let mut rows = Vec::new();
    for b in BUILTINS {
        let forward = median_ns_per_element(|| b.forward_slice(black_box(&z), black_box(&mut h)));
        let backward = median_ns_per_element(|| {
            b.backward_slice(black_box(&z), black_box(&grad_h), black_box(&mut grad_z))
        });
        rows.push((b.name(), forward, backward));
    }
    let (_, relu_forward, relu_backward) = rows[0];
    println!(
        "{:<14} {:>12} {:>8} {:>12} {:>8}",
        "activation", "forward ns/el", "× relu", "backward ns/el", "× relu"
    );
    for (name, forward, backward) in rows {
        println!(
            "{name:<14} {forward:>12.3} {:>8.1} {backward:>12.3} {:>8.1}",
            forward / relu_forward,
            backward / relu_backward
        );
    }
}
