//! What an activation site's backward pass captures for the instruments (SPEC §2): each
//! neuron's sums over the minibatch (observations with z > 0, Σ |dL/dh|, Σ |dL/dz|) and, on
//! request, the site's arrays; and the backward pass that computes the sums with dL/dz.
//!
//! A slice's sums are `ops::lane_sum_of`'s 8-lane f32 sums, the order the records have always held.
//! Where the CPU has AVX2 they are taken in one pass written with intrinsics by hand
//! ([`avx2::Lanes`], which the piecewise built-ins also use to sum dL/dz in the loop that writes
//! it): the compiler does not vectorise that loop, and no crate sums in the records' fixed lane
//! order.

use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::activation::{backward_into, ActivationFunction, ELEMENTWISE_CHUNK};
use crate::ops::GradInput;

/// Sums over a slice of observations of one neuron, in f32 (a slice is at most one sample's
/// positions, so f32 loses nothing the analysis could see).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SliceSums {
    /// Observations with z > 0.
    pub active: u32,
    /// Σ |dL/dh|.
    pub abs_grad_h: f32,
    /// Σ |dL/dz|.
    pub abs_grad_z: f32,
}

impl SliceSums {
    /// The sums of one slice.
    pub fn of(z: &[f32], grad_h: &[f32], grad_z: &[f32]) -> Self {
        let mut out = [SliceSums::default()];
        slice_sums(z, grad_h, grad_z, z.len(), &mut out);
        out[0]
    }
}

/// Elements of a group of whole planes over which a site's derivative pass runs before the
/// group's sums: z, dL/dh and dL/dz (12 bytes an element) within 768 KB, which a core's L2
/// holds (1 MB on Zen 4, 2 MB on the Xeon). A LeNet site's task is one group. Groups of 2048
/// elements, which fit L1, broke up the derivative's stream from memory every 2048 elements:
/// on Zen 4 the transcendental activations' instruments cost 0.7–1 % more of a LeNet step
/// (softplus 3.2–3.8 % against 2.3–2.8 %, tanh 2.9–4.0 against 2.2–2.4, 4 alternating runs),
/// more than the sums lose by reading the group back from L2.
const SUMS_GROUP_ELEMENTS: usize = 1 << 16;

/// The sums of one slice: three passes, each one vector loop (the compiler vectorises one loop
/// over the three arrays worse); [`slice_sums_avx2`] where the CPU has AVX2.
#[inline(always)]
fn sums_of(z: &[f32], grad_h: &[f32], grad_z: &[f32]) -> SliceSums {
    SliceSums {
        active: z.iter().filter(|&&v| v > 0.0).count() as u32,
        abs_grad_h: crate::ops::lane_sum_of(grad_h, f32::abs),
        abs_grad_z: crate::ops::lane_sum_of(grad_z, f32::abs),
    }
}

/// dL/dz written into a new gradient by `f`, then the sums of each `len`-element slice taken
/// in a second pass: [`ActivationFunction::backward_slice_new_with_sums`] for an activation
/// that does not fuse the two.
pub(crate) fn backward_new_then_sums<'a>(
    f: &(impl ActivationFunction + ?Sized),
    z: &[f32],
    grad_h: &[f32],
    grad_z: &'a mut [std::mem::MaybeUninit<f32>],
    len: usize,
    sums: &mut [SliceSums],
) -> &'a mut [f32] {
    let grad_z = f.backward_slice_new(z, grad_h, grad_z);
    slice_sums(z, grad_h, grad_z, len, sums);
    grad_z
}

/// `out[i]` = the sums of the i-th slice of `len` elements of z, dL/dh and dL/dz.
fn slice_sums(z: &[f32], grad_h: &[f32], grad_z: &[f32], len: usize, out: &mut [SliceSums]) {
    assert!(
        z.len() == out.len() * len && grad_h.len() == z.len() && grad_z.len() == z.len(),
        "slice sums' lengths"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { slice_sums_avx2(z, grad_h, grad_z, len, out) };
    }
    portable_slice_sums(z, grad_h, grad_z, len, out)
}

/// [`slice_sums`] where the CPU lacks AVX2 (and the tests' second way).
fn portable_slice_sums(
    z: &[f32],
    grad_h: &[f32],
    grad_z: &[f32],
    len: usize,
    out: &mut [SliceSums],
) {
    for (i, sums) in out.iter_mut().enumerate() {
        let slice = i * len..(i + 1) * len;
        *sums = sums_of(&z[slice.clone()], &grad_h[slice.clone()], &grad_z[slice]);
    }
}

/// [`slice_sums`] in one pass over the three arrays, in 8-lane AVX2 vectors: lane i of each sum
/// takes elements i, i + 8, … in order, then the lanes are added first to last and the tail
/// after them, exactly as [`sums_of`] adds, so the records keep their bits.
///
/// Why by hand: each lane's sum is one chain of dependent adds, so three passes wait out three
/// chains one after the other; one pass runs them side by side. The compiler does not vectorise
/// the one-pass loop (measured slower than three passes), hence the intrinsics.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn slice_sums_avx2(z: &[f32], grad_h: &[f32], grad_z: &[f32], len: usize, out: &mut [SliceSums]) {
    use std::arch::x86_64::_mm256_loadu_ps;
    for (i, sums) in out.iter_mut().enumerate() {
        let slice = i * len..(i + 1) * len;
        let (z, gh, gz) = (&z[slice.clone()], &grad_h[slice.clone()], &grad_z[slice]);
        let whole = len / avx2::LANES * avx2::LANES;
        let mut lanes = avx2::Lanes::new();
        for at in (0..whole).step_by(avx2::LANES) {
            // SAFETY: at + 8 ≤ whole ≤ len, the length of each of the three slices.
            unsafe {
                lanes.add(
                    _mm256_loadu_ps(z.as_ptr().add(at)),
                    _mm256_loadu_ps(gh.as_ptr().add(at)),
                    _mm256_loadu_ps(gz.as_ptr().add(at)),
                )
            };
        }
        *sums = lanes.finish(&z[whole..], &gh[whole..], &gz[whole..]);
    }
}

/// A slice's sums while an AVX2 loop takes them, 8 elements at a time, in the records' order.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::SliceSums;

    /// Elements a vector holds; lane i of each sum takes elements i, i + 8, … of the slice.
    pub(crate) const LANES: usize = 8;

    pub(crate) struct Lanes {
        active: __m256i,
        abs_grad_h: __m256,
        abs_grad_z: __m256,
    }

    impl Lanes {
        #[inline]
        #[target_feature(enable = "avx2")]
        pub(crate) fn new() -> Self {
            Self {
                active: _mm256_setzero_si256(),
                abs_grad_h: _mm256_setzero_ps(),
                abs_grad_z: _mm256_setzero_ps(),
            }
        }

        /// Adds the slice's next 8 elements of z, dL/dh and dL/dz.
        #[inline]
        #[target_feature(enable = "avx2")]
        pub(crate) fn add(&mut self, z: __m256, grad_h: __m256, grad_z: __m256) {
            let sign = _mm256_set1_ps(-0.0);
            // z > 0 is all ones, −1 as an integer.
            let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(z, _mm256_setzero_ps());
            self.active = _mm256_sub_epi32(self.active, _mm256_castps_si256(positive));
            self.abs_grad_h = _mm256_add_ps(self.abs_grad_h, _mm256_andnot_ps(sign, grad_h));
            self.abs_grad_z = _mm256_add_ps(self.abs_grad_z, _mm256_andnot_ps(sign, grad_z));
        }

        /// The slice's sums: the lanes added first to last, then its tail (the last `len % 8`
        /// elements) left to right, as [`super::sums_of`] adds.
        #[inline]
        #[target_feature(enable = "avx2")]
        pub(crate) fn finish(self, z: &[f32], grad_h: &[f32], grad_z: &[f32]) -> SliceSums {
            let (mut counts, mut lanes_h, mut lanes_z) =
                ([0u32; LANES], [0f32; LANES], [0f32; LANES]);
            // SAFETY: each array holds 8 elements of 32 bits, one 256-bit vector.
            unsafe {
                _mm256_storeu_si256(counts.as_mut_ptr().cast(), self.active);
                _mm256_storeu_ps(lanes_h.as_mut_ptr(), self.abs_grad_h);
                _mm256_storeu_ps(lanes_z.as_mut_ptr(), self.abs_grad_z);
            }
            SliceSums {
                active: counts.iter().sum::<u32>() + z.iter().filter(|&&v| v > 0.0).count() as u32,
                abs_grad_h: lanes_h.into_iter().sum::<f32>()
                    + grad_h.iter().map(|v| v.abs()).sum::<f32>(),
                abs_grad_z: lanes_z.into_iter().sum::<f32>()
                    + grad_z.iter().map(|v| v.abs()).sum::<f32>(),
            }
        }
    }
}

/// One neuron's sums over a minibatch's observations at a site: the SPEC §2 training statistics
/// before they are divided, computed in the site's own backward pass.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NeuronBatchSums {
    /// Observations with z > 0.
    pub active: u64,
    /// Σ |dL/dh|.
    pub abs_grad_h: f64,
    /// Σ |dL/dz|.
    pub abs_grad_z: f64,
}

impl NeuronBatchSums {
    fn add_slice(&mut self, slice: &SliceSums) {
        self.active += slice.active as u64;
        self.abs_grad_h += slice.abs_grad_h as f64;
        self.abs_grad_z += slice.abs_grad_z as f64;
    }

    fn add(&mut self, other: &NeuronBatchSums) {
        self.active += other.active;
        self.abs_grad_h += other.abs_grad_h;
        self.abs_grad_z += other.abs_grad_z;
    }
}

/// A site's values of one minibatch, laid out `[batch, neurons, positions]`.
#[derive(Debug, Default)]
pub struct SiteArrays {
    pub z: Vec<f32>,
    /// dL/dh.
    pub grad_h: Vec<f32>,
    /// dL/dz = dL/dh · f'(z).
    pub grad_z: Vec<f32>,
}

/// What an activation site hands back after the backward pass, for the instruments.
#[derive(Debug, Default)]
pub struct SiteCapture {
    /// One entry per neuron.
    pub sums: Vec<NeuronBatchSums>,
    /// Only when the request asked for them: keeping them costs a copy of dL/dz per step.
    pub arrays: Option<SiteArrays>,
}

/// Where a site's backward op leaves its [`SiteCapture`]; the training loop takes it after
/// `backward()` (tape closures must be `'static`, so they cannot call the hooks themselves).
pub type CaptureSlot = Arc<Mutex<Option<SiteCapture>>>;

/// What a site's backward op captures, and where it leaves it.
#[derive(Debug, Clone, Default)]
pub struct CaptureRequest {
    pub slot: CaptureSlot,
    /// Also keep z, dL/dh and dL/dz, for hooks that read every observation.
    pub keep_arrays: bool,
}

/// The backward pass of a site together with each neuron's sums over the batch.
///
/// Tasks cover whole samples and are fixed by the shapes alone, and their partial sums are
/// added in sample order, so the result does not depend on how rayon schedules them.
pub(crate) fn backward_with_sums(
    f: &dyn ActivationFunction,
    sample_shape: [usize; 3],
    z: &[f32],
    grad_h: &[f32],
    grad_z: &mut GradInput,
) -> Vec<NeuronBatchSums> {
    let neurons = sample_shape[0];
    let positions = sample_shape[1] * sample_shape[2];
    let sample_len = neurons * positions;
    let task_len = (ELEMENTWISE_CHUNK / sample_len).max(1) * sample_len;
    let partials: Vec<Vec<NeuronBatchSums>> = grad_z
        .par_chunks_new_or_existing(task_len)
        .zip(grad_h.par_chunks(task_len).zip(z.par_chunks(task_len)))
        .map(|(gz, (gh, z))| {
            let mut sums = vec![NeuronBatchSums::default(); neurons];
            if positions == 1 {
                // A dense site: a sample is one row across the neurons, so the derivative pass
                // runs over whole rows and the sums are added column-wise.
                let gz = backward_into(f, z, gh, gz);
                for ((z, gh), gz) in z
                    .chunks(neurons)
                    .zip(gh.chunks(neurons))
                    .zip(gz.chunks(neurons))
                {
                    for (c, sums) in sums.iter_mut().enumerate() {
                        sums.active += (z[c] > 0.0) as u64;
                        sums.abs_grad_h += gh[c].abs() as f64;
                        sums.abs_grad_z += gz[c].abs() as f64;
                    }
                }
            } else {
                // The derivative pass over a group of whole planes, then the group's sums while
                // it is still in L2 (or both in one loop, where the activation fuses them): one
                // call per plane paid the loop's tail on every 11×11 plane.
                let group = ((SUMS_GROUP_ELEMENTS / positions).max(1) * positions).min(z.len());
                let mut planes = vec![SliceSums::default(); group / positions];
                let groups = z
                    .chunks(group)
                    .zip(gh.chunks(group))
                    .zip(gz.into_chunks(group));
                for (g, ((z, gh), gz)) in groups.enumerate() {
                    let planes = &mut planes[..z.len() / positions];
                    // A new gradient (the usual case: the site is z's only consumer) is written
                    // and summed in one pass; one that holds values is added into, then summed.
                    let mut summed = false;
                    let gz = gz.fill(
                        |gz| {
                            summed = true;
                            f.backward_slice_new_with_sums(z, gh, gz, positions, planes)
                        },
                        |gz| f.backward_slice(z, gh, gz),
                    );
                    if !summed {
                        slice_sums(z, gh, gz, positions, planes);
                    }
                    let first = g * group / positions;
                    for (i, plane) in planes.iter().enumerate() {
                        sums[(first + i) % neurons].add_slice(plane);
                    }
                }
            }
            sums
        })
        .collect();
    let mut total = vec![NeuronBatchSums::default(); neurons];
    for partial in &partials {
        for (t, p) in total.iter_mut().zip(partial) {
            t.add(p);
        }
    }
    total
}

/// Σ |v| as the records have always summed it, written out for the tests: 8 lanes, lane i
/// taking elements i, i + 8, … in order, the lanes added first to last, then the tail left to
/// right.
#[cfg(test)]
pub(crate) fn eight_lane_abs_sum(v: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let full = v.len() / 8 * 8;
    for (k, x) in v[..full].iter().enumerate() {
        lanes[k % 8] += x.abs();
    }
    let mut total = 0f32;
    for lane in lanes {
        total += lane;
    }
    let mut tail = 0f32;
    for x in &v[full..] {
        tail += x.abs();
    }
    total + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each slice's sums are, bit for bit, those of the records' order, for slice lengths with
    /// and without a tail and any number of slices, by the dispatched code (AVX2 where the CPU
    /// has it) and by the portable loops.
    #[test]
    fn slice_sums_keep_the_records_summation_order_bit_for_bit() {
        type SumsFn = fn(&[f32], &[f32], &[f32], usize, &mut [SliceSums]);
        let ways: [(&str, SumsFn); 2] = [
            ("dispatched", slice_sums),
            ("portable", portable_slice_sums),
        ];
        for ((way, slice_sums), len) in ways
            .into_iter()
            .flat_map(|way| [0usize, 1, 7, 8, 9, 16, 17, 121, 676].map(|len| (way, len)))
        {
            for count in 1..=9 {
                let n = len * count;
                let value = |i: usize, scale: f32| ((i as f32 * 0.618_034).fract() - 0.4) * scale;
                let z: Vec<f32> = (0..n).map(|i| value(i, 3.0)).collect();
                let grad_h: Vec<f32> = (0..n).map(|i| value(i + 7, 1e-3)).collect();
                let grad_z: Vec<f32> = (0..n).map(|i| value(i + 13, 0.5)).collect();
                let mut out = vec![SliceSums::default(); count];
                slice_sums(&z, &grad_h, &grad_z, len, &mut out);
                for (i, got) in out.iter().enumerate() {
                    let range = i * len..(i + 1) * len;
                    let active = z[range.clone()].iter().filter(|&&v| v > 0.0).count() as u32;
                    let context = format!("{way}: slice {i} of {count}, length {len}");
                    assert_eq!(got.active, active, "{context}");
                    let want_h = eight_lane_abs_sum(&grad_h[range.clone()]);
                    let want_z = eight_lane_abs_sum(&grad_z[range]);
                    assert_eq!(got.abs_grad_h.to_bits(), want_h.to_bits(), "{context}");
                    assert_eq!(got.abs_grad_z.to_bits(), want_z.to_bits(), "{context}");
                }
            }
        }
    }
}
