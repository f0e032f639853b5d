//! Training throughput of a net (LeNet, conv32-conv64-fc128, on 28×28 grey inputs unless told
//! otherwise), batch 64: the cost of the instruments, the cost of the probe pass, the FLOP/s
//! reached against the machine's peak, and peak RSS.
//!
//! Run: `cargo run --release --example bench_train [-- --threads 2 --steps 384 --samples 8192
//! --epochs 2 --activations relu,relu-softsign --flops-per-cycle 64 --batch 64]`; another net on
//! colour images: `-- --arch resnet20 --image-size 32 --channels 3` (any preset or spec); only
//! some measurements: `--parts on-off,versus,phases,profile` (the first three unless told).
//!
//! Instrument cost: two copies of the network, instruments off and on, train side by side on the
//! same minibatches, one step each in turn (which goes first alternates), so that a slow spell of
//! a shared machine hits both alike. An activation's own cost is measured the same way, its copy
//! against a relu copy. img/s is the batch size over the median step time (forward,
//! backward, hooks and optimiser); the overhead is the median over steps of on/off − 1.
//! Phases: one real run per activation (synthetic dataset, `--samples`, `--epochs`) times the
//! test evaluation, the probe pass at its default size and the record writing of each epoch, and
//! its end-to-end speed: training images over the run's whole wall time (`<activation> whole-run:`,
//! the line scripts/bench_compare.sh sets against scripts/bench_pytorch.py --whole-run).
//! Profile: where an instrumented step's time goes, phase by phase (`necrosis::profile`): each
//! op's forward and backward, the instruments' events, dfdx's dense and loss ops, the optimiser.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use necrosis::activation::activation_by_name;
use necrosis::arch::{self, LayerSpec};
use necrosis::data::{self, DatasetKind, DatasetSpec};
use necrosis::hooks::recorder::NeuronRecorder;
use necrosis::hooks::representation::LayerRecorder;
use necrosis::hooks::{HookSet, StepContext};
use necrosis::model::Model;
use necrosis::optim::Optimizer;
use necrosis::records::config::{RunConfig, DEFAULT_PROBE_SIZE};
use necrosis::train::{self, EpochPhases, Progress, RunOptions};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Flags of the benchmark.
#[derive(clap::Parser)]
struct Args {
    /// Rayon threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Interleaved steps per copy for the instrument cost.
    #[arg(long, default_value_t = 384, value_parser = clap::value_parser!(u64).range(8..))]
    steps: u64,
    /// Synthetic training samples of the phase run.
    #[arg(long, default_value_t = 8192)]
    samples: usize,
    /// Epochs of the phase run.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Activations, comma-separated.
    #[arg(long, default_value = "relu,relu-softsign", value_delimiter = ',')]
    activations: Vec<String>,
    /// Peak f32 FLOP per cycle and core; by default 64 where the CPU has AVX-512 at full width
    /// (two 512-bit FMA pipes, as on Xeon Gold/Platinum and Zen 5) and 32 otherwise (two 256-bit
    /// pipes, Zen 4's AVX-512 included).
    #[arg(long)]
    flops_per_cycle: Option<usize>,
    /// The net: a preset (lenet, cifar, cifar-bn, resnet20) or a layer spec.
    #[arg(long, default_value = "lenet")]
    arch: String,
    /// Side of the synthetic images.
    #[arg(long, default_value_t = 28)]
    image_size: usize,
    /// Channels of the synthetic images (3: colour).
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Minibatch size, of the interleaved steps and of the phase run.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Which measurements to make, comma-separated: `on-off` (instruments off against on),
    /// `versus` (each activation against relu), `phases` (the real run) and `profile` (where a
    /// step's time goes, by phase). A comparison script asks only for what it tabulates, so a
    /// round of large nets fits its time budget.
    #[arg(
        long,
        value_enum,
        default_value = "on-off,versus,phases",
        value_delimiter = ','
    )]
    parts: Vec<Part>,
    /// Probe samples of the phase run (default: 2048, or the training set if smaller).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    probe_size: Option<u64>,
}

/// One of the benchmark's measurements (`--parts`).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    OnOff,
    Versus,
    Phases,
    Profile,
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The value of the first CPU's `field` in /proc/cpuinfo.
fn cpu_info(field: &str) -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info
        .lines()
        .find(|l| l.split(':').next().is_some_and(|k| k.trim() == field))?;
    Some(line.split(':').nth(1)?.trim().to_string())
}

/// The clock of the first CPU in /proc/cpuinfo, in GHz. Under a hypervisor it can be the nominal
/// clock, which the cores boost above, and the peak computed from it is then an underestimate.
fn cpu_ghz() -> Option<f64> {
    let mhz: f64 = cpu_info("cpu MHz")?.parse().ok()?;
    Some(mhz / 1000.0)
}

/// Peak f32 FLOP per cycle and core where `--flops-per-cycle` does not say: two FMA pipes of
/// 16 lanes where AVX-512 runs at full width, of 8 lanes otherwise. Zen 4 (AMD family 25) has
/// AVX-512 but runs each 512-bit FMA on its two 256-bit pipes, so it peaks at 32, like AVX2;
/// Zen 5 (family 26) has 512-bit pipes.
fn default_flops_per_cycle() -> usize {
    let zen4 = cpu_info("vendor_id").as_deref() == Some("AuthenticAMD")
        && cpu_info("cpu family").as_deref() == Some("25");
    if has_avx512() && !zen4 {
        64
    } else {
        32
    }
}

/// Floating-point operations of one training image (forward, dL/dW, and dL/dx of every layer
/// but the first), counting a multiply-add as two; pooling and activations are left out.
fn training_flops_per_image(layers: &[LayerSpec], input: [usize; 3]) -> f64 {
    let [mut c, mut h, mut w] = input;
    let mut flops = 0.0;
    let mut first = true;
    for layer in layers {
        match layer {
            LayerSpec::Conv {
                out,
                kernel,
                stride,
                padding,
                ..
            } => {
                h = (h + 2 * padding - kernel) / stride + 1;
                w = (w + 2 * padding - kernel) / stride + 1;
                let macs = (out * c * kernel * kernel * h * w) as f64;
                flops += 2.0 * macs * if first { 2.0 } else { 3.0 };
                c = *out;
                first = false;
            }
            LayerSpec::Maxpool { kernel, stride } | LayerSpec::Avgpool { kernel, stride } => {
                h = (h - kernel) / stride + 1;
                w = (w - kernel) / stride + 1;
            }
            LayerSpec::Fc { out, .. } => {
                let macs = (c * h * w * out) as f64;
                flops += 2.0 * macs * if first { 2.0 } else { 3.0 };
                (c, h, w) = (*out, 1, 1);
                first = false;
            }
            LayerSpec::Gap => (h, w) = (1, 1),
            LayerSpec::Res { out, stride, .. } => {
                let (h_out, w_out) = ((h - 1) / stride + 1, (w - 1) / stride + 1);
                let positions = (h_out * w_out) as f64;
                let mut macs = positions * (out * c * 9 + out * out * 9) as f64;
                if *stride != 1 || *out != c {
                    macs += positions * (out * c) as f64;
                }
                flops += 2.0 * macs * 3.0;
                (c, h, w) = (*out, h_out, w_out);
                first = false;
            }
            LayerSpec::Act { .. }
            | LayerSpec::Flatten
            | LayerSpec::Bn { .. }
            | LayerSpec::Dropout { .. } => {}
        }
    }
    flops
}

/// The median; NaN for no values (a phase run too short to time a step between its epochs' first
/// and last).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Median step seconds of two copies of the network trained side by side (`first`, `second`:
/// each an activation and whether its instruments are on), and the median of the paired ratios
/// second/first.
struct Interleaved {
    first: f64,
    second: f64,
    ratio: f64,
}

fn interleaved_steps(
    dataset: &data::Dataset,
    spec: &DatasetSpec,
    arch: &str,
    copies: [(&str, bool); 2],
    steps: usize,
    batch: usize,
) -> anyhow::Result<Interleaved> {
    let config = RunConfig {
        arch: arch.to_string(),
        batch_size: batch,
        ..RunConfig::new(spec.clone(), copies[0].0)
    };
    let mut copies = [
        build_copy(dataset, &config, copies[0])?,
        build_copy(dataset, &config, copies[1])?,
    ];
    let batch = config.batch_size;
    let mut seconds = [Vec::new(), Vec::new()];
    for step in 0..steps {
        let (images, labels) = minibatch(dataset, step, batch);
        let order = if step % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let (model, optimizer, hooks) = &mut copies[which];
            let ctx = step_context(optimizer, batch, &config);
            let clock = Instant::now();
            train::train_step(model, optimizer, hooks, images.clone(), &labels, &ctx)?;
            seconds[which].push(clock.elapsed().as_secs_f64());
        }
    }
    // The first steps warm caches and the allocator up.
    let warm = steps / 8;
    let mut ratios: Vec<f64> = seconds[1][warm..]
        .iter()
        .zip(&seconds[0][warm..])
        .map(|(second, first)| second / first)
        .collect();
    let [first, second] = seconds.map(|mut s| median(&mut s[warm..]));
    Ok(Interleaved {
        first,
        second,
        ratio: median(&mut ratios),
    })
}

/// A network with its optimiser and, when `instruments`, the recorders a run has.
fn build_copy(
    dataset: &data::Dataset,
    config: &RunConfig,
    (activation, instruments): (&str, bool),
) -> anyhow::Result<(Model, Optimizer, HookSet)> {
    let layers = arch::resolve(&config.arch, dataset.input_shape(), dataset.classes)?;
    let f = activation_by_name(activation)?;
    let model = Model::new(
        &layers,
        dataset.input_shape(),
        dataset.classes,
        f.clone(),
        config.seed,
    )?;
    let optimizer = Optimizer::new(config.optimizer, model.params());
    let mut hooks = HookSet::new(
        instruments.then(|| NeuronRecorder::new(model.sites.clone(), f.clone())),
        Vec::new(),
    );
    hooks.layers = instruments.then(|| LayerRecorder::new(model.sites.clone(), &model.params()));
    Ok((model, optimizer, hooks))
}

/// The context of the optimiser's next step on a minibatch of `batch` (epoch 1, seed 0).
fn step_context(optimizer: &Optimizer, batch: usize, config: &RunConfig) -> StepContext {
    StepContext {
        seed: 0,
        epoch: 1,
        step: optimizer.step,
        batch_size: batch,
        lr: config.lr as f32,
    }
}

/// The `step`-th minibatch of a cycle through the training set's whole batches, in order.
fn minibatch(dataset: &data::Dataset, step: usize, batch: usize) -> (Vec<f32>, Vec<u32>) {
    let sample_len = dataset.sample_len();
    let batches = dataset.train.len() / batch;
    let indices = (step % batches) * batch..(step % batches + 1) * batch;
    let labels = dataset.train.labels[indices.clone()].to_vec();
    let images = indices
        .flat_map(|i| dataset.train.sample(i, sample_len).iter().copied())
        .collect();
    (images, labels)
}

/// Where one instrumented step's time goes: `steps` steps of one copy, the first eighth
/// unprofiled (warm-up), the rest with [`necrosis::profile`] on. Prints each phase's exclusive
/// milliseconds per step and its share of the mean step.
fn profile_steps(
    dataset: &data::Dataset,
    spec: &DatasetSpec,
    arch: &str,
    activation: &str,
    steps: usize,
    batch: usize,
) -> anyhow::Result<()> {
    let config = RunConfig {
        arch: arch.to_string(),
        batch_size: batch,
        ..RunConfig::new(spec.clone(), activation)
    };
    let (mut model, mut optimizer, mut hooks) = build_copy(dataset, &config, (activation, true))?;
    let warm = steps / 8;
    let mut step_time = 0.0;
    necrosis::profile::take();
    for step in 0..steps {
        let (images, labels) = minibatch(dataset, step, batch);
        let ctx = step_context(&optimizer, batch, &config);
        necrosis::profile::enable(step >= warm);
        let clock = Instant::now();
        train::train_step(
            &mut model,
            &mut optimizer,
            &mut hooks,
            images,
            &labels,
            &ctx,
        )?;
        if step >= warm {
            step_time += clock.elapsed().as_secs_f64();
        }
    }
    necrosis::profile::enable(false);
    let profiled = (steps - warm) as f64;
    let mut phases: Vec<(&str, f64)> = necrosis::profile::take()
        .into_iter()
        .map(|(phase, total)| (phase, total.time.as_secs_f64() / profiled))
        .collect();
    phases.sort_by(|a, b| b.1.total_cmp(&a.1));
    let step = step_time / profiled;
    let attributed: f64 = phases.iter().map(|p| p.1).sum();
    phases.push((
        "rest of the step (input tensor, logits read-out)",
        step - attributed,
    ));
    println!(
        "{activation} profile: mean step {:.2} ms over {} steps ({:.1} img/s), instruments on:",
        1e3 * step,
        steps - warm,
        batch as f64 / step
    );
    for (phase, seconds) in phases {
        println!(
            "{activation} profile:   {:<44} {:>7.3} ms {:>5.1} %",
            phase,
            1e3 * seconds,
            100.0 * seconds / step
        );
    }
    Ok(())
}

/// Median seconds of each phase over the trained epochs of one real run, its median step, and
/// the wall time of the whole run (`train::run` from start to end).
struct Phases {
    step_seconds: f64,
    probe_seconds: f64,
    eval_seconds: f64,
    save_seconds: f64,
    total_seconds: f64,
}

fn run_phases(
    dataset: &data::Dataset,
    spec: &DatasetSpec,
    arch: &str,
    activation: &str,
    epochs: usize,
    batch: usize,
    probe_size: usize,
) -> anyhow::Result<Phases> {
    let config = RunConfig {
        epochs,
        arch: arch.to_string(),
        batch_size: batch,
        probe_size: Some(probe_size),
        ..RunConfig::new(spec.clone(), activation)
    };
    let dir = tempfile::tempdir()?;
    let phases: Arc<Mutex<Vec<EpochPhases>>> = Default::default();
    let step_seconds: Arc<Mutex<Vec<f64>>> = Default::default();
    let (phases_in, steps_in) = (phases.clone(), step_seconds.clone());
    let mut last_step = Instant::now();
    let options = RunOptions {
        progress: Box::new(move |event| match event {
            Progress::Phases(p) => phases_in.lock().unwrap().push(p),
            Progress::Step { batch, batches, .. } => {
                // The first step of an epoch follows the previous epoch's evaluation and probe,
                // and the last one may be a short batch.
                if batch > 1 && batch < batches {
                    steps_in
                        .lock()
                        .unwrap()
                        .push(last_step.elapsed().as_secs_f64());
                }
                last_step = Instant::now();
            }
            Progress::Epoch(_) => {}
        }),
        ..Default::default()
    };
    // Everything a user waits for: model and manifest, epoch-0 probe, training, evaluations,
    // probes, records and checkpoints (the dataset is generated before, as it is loaded before).
    let clock = Instant::now();
    train::run(dataset, &config, dir.path(), options)?;
    let total_seconds = clock.elapsed().as_secs_f64();
    let trained: Vec<EpochPhases> = phases
        .lock()
        .unwrap()
        .iter()
        .filter(|p| p.epoch > 0)
        .copied()
        .collect();
    let per_epoch =
        |get: fn(&EpochPhases) -> f64| median(&mut trained.iter().map(get).collect::<Vec<_>>());
    let step = median(&mut step_seconds.lock().unwrap());
    Ok(Phases {
        step_seconds: step,
        probe_seconds: per_epoch(|p| p.probe_seconds),
        eval_seconds: per_epoch(|p| p.eval_seconds),
        save_seconds: per_epoch(|p| p.save_seconds),
        total_seconds,
    })
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os("NECROSIS_PURGE").is_none() {
        necrosis::keep_freed_memory();
    }
    let Args {
        threads,
        steps,
        samples,
        epochs,
        activations,
        flops_per_cycle,
        arch,
        image_size,
        channels,
        batch,
        parts,
        probe_size,
    } = clap::Parser::parse();
    let steps = steps as usize;
    let batch_size = batch as usize;
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()?;
    let mut spec = DatasetSpec::new(DatasetKind::Synthetic);
    spec.synthetic_samples = Some(samples);
    spec.image_size = Some(image_size);
    spec.synthetic_channels = (channels != 1).then_some(channels);
    let dataset = data::load(&spec)?;
    let probe_size = probe_size.map_or(DEFAULT_PROBE_SIZE, |n| n as usize);
    let probe_size = probe_size.min(dataset.train.len());
    if parts.contains(&Part::OnOff) || parts.contains(&Part::Versus) {
        // The interleaved steps cycle through the training set's whole batches.
        anyhow::ensure!(
            dataset.train.len() >= batch_size,
            "--samples {samples} gives fewer training samples than one batch of {batch_size}"
        );
    }
    let batch = batch_size as f64;
    let layers = arch::resolve(&arch, dataset.input_shape(), dataset.classes)?;
    let flops = training_flops_per_image(&layers, dataset.input_shape());
    let flops_per_cycle = flops_per_cycle.unwrap_or_else(default_flops_per_cycle);
    let peak = cpu_ghz().map(|ghz| ghz * 1e9 * (flops_per_cycle * threads) as f64);
    let of_peak = |ips: f64| {
        let achieved = ips * flops;
        format!(
            "{:.1} GFLOP/s{}",
            achieved / 1e9,
            peak.map(|p| format!(" = {:.1} % of peak", 100.0 * achieved / p))
                .unwrap_or_default()
        )
    };
    let parameters = Model::new(
        &layers,
        dataset.input_shape(),
        dataset.classes,
        activation_by_name("relu")?,
        0,
    )?
    .parameter_count();
    println!(
        "# {arch} ({parameters} parameters, {:.1} MFLOP per training image), {channels}x{image_size}x{image_size} synthetic, batch {batch_size}, {threads} threads; {steps} interleaved steps per copy, then one {epochs}-epoch run on {} samples{}",
        flops / 1e6,
        dataset.train.len(),
        if parts.len() < 3 || parts.contains(&Part::Profile) {
            // Say which were left out, so a log does not promise lines it lacks.
            let names: Vec<_> = parts
                .iter()
                .map(|p| clap::ValueEnum::to_possible_value(p).map(|v| v.get_name().to_string()))
                .map(Option::unwrap_or_default)
                .collect();
            format!(" (parts: {})", names.join(", "))
        } else {
            String::new()
        }
    );
    for activation in &activations {
        if parts.contains(&Part::OnOff) {
            let pair = [(activation.as_str(), false), (activation.as_str(), true)];
            let on_off = interleaved_steps(&dataset, &spec, &arch, pair, steps, batch_size)?;
            for (name, seconds) in [("off", on_off.first), ("on", on_off.second)] {
                let ips = batch / seconds;
                println!(
                    "{activation} instruments={name}: {ips:.1} img/s, {}",
                    of_peak(ips)
                );
            }
            println!(
                "{activation} instrument overhead: {:+.1} % of training time (median over steps of on/off − 1)",
                100.0 * (on_off.ratio - 1.0)
            );
        }
        if activation != "relu" && parts.contains(&Part::Versus) {
            // Against relu in the same interleaved run: what the activation itself costs.
            let pair = [("relu", true), (activation.as_str(), true)];
            let versus = interleaved_steps(&dataset, &spec, &arch, pair, steps, batch_size)?;
            println!(
                "{activation} step vs relu (instruments on, interleaved): {:+.1} % (median over steps of {activation}/relu − 1)",
                100.0 * (versus.ratio - 1.0)
            );
        }
        if parts.contains(&Part::Profile) {
            profile_steps(&dataset, &spec, &arch, activation, steps, batch_size)?;
        }
        if !parts.contains(&Part::Phases) {
            continue;
        }
        let phases = run_phases(
            &dataset, &spec, &arch, activation, epochs, batch_size, probe_size,
        )?;
        let epoch_seconds = |n: usize| n as f64 / batch * phases.step_seconds;
        println!(
            "{activation} run: {:.1} img/s; probe pass ({probe_size} samples) {:.3} s = {:.1} % of this {}-sample epoch, {:.1} % of a 60000-sample (MNIST) epoch; test evaluation {:.3} s; records {:.3} s",
            batch / phases.step_seconds,
            phases.probe_seconds,
            100.0 * phases.probe_seconds / epoch_seconds(dataset.train.len()),
            dataset.train.len(),
            100.0 * phases.probe_seconds / epoch_seconds(60_000),
            phases.eval_seconds,
            phases.save_seconds,
        );
        println!(
            "{activation} epoch cost: {:.0} s for 50000 training images (CIFAR), {:.0} s for 60000 (MNIST), probe pass included",
            epoch_seconds(50_000) + phases.probe_seconds,
            epoch_seconds(60_000) + phases.probe_seconds,
        );
        // What a user sees of a whole run: the step rate above is diluted by the epoch-0 probe,
        // the evaluations, the probes, the records and the checkpoints.
        let trained = dataset.train.len() * epochs;
        println!(
            "{activation} whole-run: {:.1} img/s end to end ({trained} training images / {:.2} s wall time of the {epochs}-epoch run; epoch-0 probe, test evaluations ({} samples), probes ({probe_size} samples), records and checkpoints included)",
            trained as f64 / phases.total_seconds,
            phases.total_seconds,
            dataset.test.len(),
        );
    }
    println!(
        "# {:.1} MFLOP per training image; peak {} ({flops_per_cycle} FLOP/cycle/core at the /proc/cpuinfo clock); peak RSS {:.0} MB",
        flops / 1e6,
        peak.map(|p| format!("{:.0} GFLOP/s", p / 1e9))
            .unwrap_or_else(|| "unknown".into()),
        peak_rss_mb()
    );
    Ok(())
}
