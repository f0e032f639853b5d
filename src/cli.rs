//! The `necrosis-report` command line: the translation of its flags ([`crate::flags`]) into
//! sweep plans and analysis options, and the subcommands' work. `main.rs` only calls
//! [`main_with_args`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

pub use crate::flags::{AnalyzeArgs, Cli, Command, RunArgs};

use necrosis::activation::{activation_by_name, builtin_names};
use necrosis::data::{DatasetKind, DatasetSpec};
use necrosis::sweep::{self, SweepPlan, SweepSummary};
use necrosis_records::config::InvalidConfig;
use necrosis_records::config::Schedule;
use necrosis_records::grid::{ExcludeRule, OptimizerKind, SweepGrid};

/// Every text parsed as a setting's value.
fn parse_all<T: std::str::FromStr<Err = InvalidConfig>>(
    texts: &[String],
) -> Result<Vec<T>, InvalidConfig> {
    texts.iter().map(|t| t.parse()).collect()
}

impl RunArgs {
    /// The sweep this invocation runs: the grid of the flags or of `--config`, cut to `--shard`.
    /// The sweep, and the named contrasts its report tests (flags and sweep file together).
    pub fn sweep_plan(&self) -> Result<(SweepPlan, Vec<String>)> {
        let mut contrasts = self.contrast.clone();
        let mut plan = match &self.config {
            None => self.plan()?,
            Some(path) => {
                let file = crate::sweep_file::SweepFile::read(path)?;
                contrasts.extend(file.contrasts.iter().cloned());
                let grid = file.grid(self)?;
                let name = match (&file.name, grid.datasets.as_slice()) {
                    (Some(name), _) => name.clone(),
                    (None, [one]) => self
                        .name
                        .clone()
                        .unwrap_or_else(|| one.kind.name().to_string()),
                    (None, _) => bail!(
                        "--config {}: several datasets need a `name` for the sweep",
                        path.display()
                    ),
                };
                let mut args = self.clone();
                if let Some(out) = &file.out {
                    args.out = out.clone();
                }
                args.plan_of(grid, name)?
            }
        };
        if let Some(shard) = &self.shard {
            let (index, count) = parse_shard(shard)?;
            plan.runs = sweep::shard(&plan.runs, index, count);
        }
        Ok((plan, contrasts))
    }

    /// The grid of the flags: every setting a list; one dataset.
    pub fn grid(&self) -> Result<SweepGrid> {
        let kind: DatasetKind = self
            .dataset
            .parse()
            .map_err(|e| anyhow::anyhow!("--dataset: {e}"))?;
        if kind.needs_data_dir() && self.data_dir.is_none() {
            bail!("--data-dir is required for --dataset {}", kind.name());
        }
        if let Some(dir) = &self.data_dir {
            if !dir.is_dir() {
                bail!("--data-dir {}: no such folder", dir.display());
            }
        }
        for name in &self.activations {
            activation_by_name(name).context("--activations")?;
        }
        let optimizer = self
            .optimizer
            .iter()
            .map(|name| match name.as_str() {
                "sgd" => Ok(OptimizerKind::Sgd),
                "adam" => Ok(OptimizerKind::Adam),
                other => bail!("--optimizer '{other}': expected sgd or adam"),
            })
            .collect::<Result<Vec<_>>>()?;
        let schedule = self
            .schedule
            .iter()
            .map(|s| s.parse::<Schedule>())
            .collect::<Result<Vec<_>, _>>()?;
        let seed: Vec<u64> = if self.seed_list.is_empty() {
            (0..self.seeds).collect()
        } else {
            self.seed_list.clone()
        };
        if seed.is_empty() {
            bail!("--seeds must be at least 1");
        }
        let optional = |values: &[usize]| -> Vec<Option<usize>> {
            if values.is_empty() {
                vec![None]
            } else {
                values.iter().copied().map(Some).collect()
            }
        };
        let exclude = self
            .exclude
            .iter()
            .map(|rule| parse_exclude(rule))
            .collect::<Result<Vec<_>>>()?;
        let grid = SweepGrid {
            datasets: vec![DatasetSpec {
                kind,
                data_dir: self.data_dir.clone(),
                image_size: self.image_size,
                grayscale: self.grayscale,
                synthetic_samples: self.synthetic_samples,
                synthetic_channels: self.synthetic_channels,
            }],
            activation: self.activations.clone(),
            lr: self.lr.clone(),
            seed,
            arch: self.arch.clone(),
            optimizer,
            momentum: self.momentum.clone(),
            weight_decay: self.weight_decay.clone(),
            batch_size: self.batch_size.clone(),
            epochs: self.epochs.clone(),
            schedule,
            probe_size: optional(&self.probe_size),
            train_limit: optional(&self.train_limit),
            // A bad value is an InvalidConfig, which the error message names by its flag.
            init: parse_all(&self.init)?,
            bias_init: parse_all(&self.bias_init)?,
            output_init: self
                .output_init
                .iter()
                .map(|s| match s.as_str() {
                    "same" => Ok(None),
                    // The values of `init`, under this setting's own key (and so flag).
                    other => other.parse().map(Some).map_err(|e| InvalidConfig {
                        key: "output_init",
                        ..e
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?,
            augment: parse_all(&self.augment)?,
            intervention: parse_all(&self.intervention)?,
            exclude,
        };
        grid.check_rules()?;
        Ok(grid)
    }

    /// The sweep of the flags' grid.
    pub fn plan(&self) -> Result<SweepPlan> {
        let grid = self.grid()?;
        let name = self.name.clone().unwrap_or_else(|| self.dataset.clone());
        self.plan_of(grid, name)
    }

    /// The sweep of `grid` under `name`: its runs and the factors that name them.
    pub fn plan_of(&self, grid: SweepGrid, name: String) -> Result<SweepPlan> {
        sweep::check_name(&name)?;
        let expansion = grid.expand()?;
        if expansion.runs.is_empty() {
            bail!("--exclude leaves no run of the grid");
        }
        Ok(SweepPlan {
            name,
            out: self.out.clone(),
            runs: expansion.runs,
            factors: expansion.factors.iter().map(|(key, _)| *key).collect(),
            grid: Some(grid),
            extend: self.extend,
            instruments: true,
        })
    }
}

/// `--contrast` values as contrasts.
fn parse_contrasts(texts: &[String]) -> Result<Vec<necrosis_analysis::contrast::Contrast>> {
    texts
        .iter()
        .map(|t| t.parse().context("--contrast"))
        .collect()
}

/// `KEY=VALUE[|VALUE...],KEY=...` as an exclusion rule.
fn parse_exclude(rule: &str) -> Result<ExcludeRule> {
    rule.split(',')
        .map(|pair| {
            let (key, values) = pair.split_once('=').with_context(|| {
                format!("--exclude '{rule}': expected KEY=VALUE pairs, got '{pair}'")
            })?;
            Ok((
                key.trim().to_string(),
                values.split('|').map(|v| v.trim().to_string()).collect(),
            ))
        })
        .collect()
}

/// One line saying what the sweep varies: `activation (2) × optimizer (2) × seed (3) = 12 runs`.
pub fn describe_factors(plan: &SweepPlan) -> String {
    let expansion_factors: Vec<String> = plan
        .factors
        .iter()
        .map(|key| {
            // In the order the grid lists them.
            let mut values: Vec<String> = Vec::new();
            for run in &plan.runs {
                if let Some(value) = run.factor_values().get(key) {
                    if !values.contains(value) {
                        values.push(value.clone());
                    }
                }
            }
            format!("{key} ({})", values.join(", "))
        })
        .collect();
    if expansion_factors.is_empty() {
        "one run".to_string()
    } else {
        format!(
            "factors: {}; {} runs",
            expansion_factors.join(" × "),
            plan.runs.len()
        )
    }
}

impl AnalyzeArgs {
    pub fn options(&self) -> Result<necrosis_analysis::AnalyzeOptions> {
        if let Some(t) = self.target_acc {
            if !(0.0..=1.0).contains(&t) {
                bail!("--target-acc must be in [0, 1], got {t}");
            }
        }
        Ok(necrosis_analysis::AnalyzeOptions {
            target_acc: self.target_acc,
            baseline: Some(self.baseline.clone()),
            all_pairs: self.all_pairs,
            dead_window: self.dead_window,
            starved_eps: self.starved_eps,
            contrasts: parse_contrasts(&self.contrast)?,
            ..Default::default()
        })
    }
}

/// Parses `I/N` with 0 <= I < N.
fn parse_shard(text: &str) -> Result<(usize, usize)> {
    let parsed = text.split_once('/').and_then(|(i, n)| {
        Some((
            i.trim().parse::<usize>().ok()?,
            n.trim().parse::<usize>().ok()?,
        ))
    });
    match parsed {
        Some((i, n)) if n > 0 && i < n => Ok((i, n)),
        _ => bail!("--shard '{text}': expected I/N with 0 <= I < N, e.g. 0/4"),
    }
}

fn install_thread_pool(threads: Option<usize>) -> Result<()> {
    if let Some(n) = threads {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("--threads")?;
    }
    Ok(())
}

/// Ctrl-C sets the flag: the current step finishes, nothing half-written remains, and the run
/// can be resumed. A second Ctrl-C exits at once.
fn install_interrupt() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: finishing the current step; completed epochs are kept");
    });
    stop
}

fn report_summary(summary: &SweepSummary, resume_hint: &std::path::Path) -> Result<()> {
    if summary.interrupted {
        eprintln!(
            "interrupted; continue with: necrosis-report resume {}",
            resume_hint.display()
        );
        std::process::exit(130);
    }
    if !summary.failed.is_empty() {
        let list: Vec<String> = summary
            .failed
            .iter()
            .map(|(id, e)| format!("{id}: {}", user_message(e)))
            .collect();
        bail!(
            "{} run(s) failed:\n  {}",
            summary.failed.len(),
            list.join("\n  ")
        );
    }
    Ok(())
}

/// Loads the runs under `paths` and writes their report, with figure (a) for the built-in
/// activations among them.
fn write_report(
    paths: &[PathBuf],
    mut options: necrosis_analysis::AnalyzeOptions,
    out: &std::path::Path,
) -> Result<()> {
    let runs = necrosis_analysis::load_runs(paths)?;
    if runs.runs.is_empty() && runs.diverged.is_empty() {
        let reasons: Vec<String> = runs
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.dir.display(), s.reason))
            .collect();
        bail!("no run can be analysed:\n  {}", reasons.join("\n  "));
    }
    let mut names: Vec<String> = runs.runs.iter().map(|r| r.activation.clone()).collect();
    names.sort();
    names.dedup();
    names.retain(|n| activation_by_name(n).is_ok());
    options.activation_curves = activation_curves(&names)?;
    let summary = without_panics("measuring the runs", || {
        necrosis_analysis::write_report(&runs, &options, out)
    })?;
    println!(
        "report: {} ({} runs analysed, {} diverged, {} skipped; {} figures, {} tables)",
        summary.index_html.display(),
        summary.runs_used,
        summary.diverged,
        summary.skipped,
        summary.figures.len(),
        summary.tables.len()
    );
    Ok(())
}

/// Runs `work`, turning a panic inside it into an error. Record files are read under their own
/// guard (a damaged file is named as such), so a panic here is a bug, and is reported as one.
fn without_panics<T>(what: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            bail!("{what}: internal error (a bug in necrosis; please report it): {message}")
        }
    }
}

/// The flag that sets the library's setting `key` (`batch_size` → `--batch-size`).
fn flag_for(key: &str) -> String {
    match key {
        "activation" => "--activations".into(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// The error as the user reads it: one line, its causes joined by ": ", with a setting named
/// by its flag (`--batch-size`) where the library names it by its key (`batch_size`).
pub fn user_message(err: &anyhow::Error) -> String {
    err.chain()
        .map(|cause| match cause.downcast_ref::<InvalidConfig>() {
            Some(invalid) => format!("{} {}", flag_for(invalid.key), invalid.problem),
            None => cause.to_string(),
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// Sampled f and f' of each named activation, for figure (a).
pub fn activation_curves(names: &[String]) -> Result<Vec<necrosis_analysis::ActivationCurve>> {
    let names: Vec<String> = if names.is_empty() {
        builtin_names().into_iter().map(String::from).collect()
    } else {
        names.to_vec()
    };
    names
        .iter()
        .map(|name| {
            let f = activation_by_name(name).context("--names")?;
            let x: Vec<f64> = (0..=400).map(|i| -5.0 + i as f64 * 0.025).collect();
            Ok(necrosis_analysis::ActivationCurve {
                name: name.clone(),
                f: x.iter().map(|&v| f.value(v as f32) as f64).collect(),
                df: x.iter().map(|&v| f.derivative(v as f32) as f64).collect(),
                x,
            })
        })
        .collect()
}

/// Runs the CLI.
pub fn main_with_args(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(args) => {
            install_thread_pool(args.threads)?;
            let (plan, contrasts) = args.sweep_plan()?;
            let contrasts = parse_contrasts(&contrasts)?;
            let stop = install_interrupt();
            let sweep_dir = plan.out.join(&plan.name);
            println!(
                "sweep '{}': {} runs into {}",
                plan.name,
                plan.runs.len(),
                sweep_dir.display()
            );
            println!("{}", describe_factors(&plan));
            let summary = sweep::run_sweep(&plan, stop)?;
            println!(
                "{} complete, {} skipped (already done), {} diverged, {} failed",
                summary.completed.len(),
                summary.skipped.len(),
                summary.diverged.len(),
                summary.failed.len()
            );
            report_summary(&summary, &sweep_dir)?;
            if args.shard.is_some() {
                println!(
                    "shard done; once every shard has finished: necrosis-report analyze {} --out reports/{}",
                    sweep_dir.display(),
                    plan.name
                );
            } else if !args.no_report {
                let out = args
                    .report_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("reports").join(&plan.name));
                let options = necrosis_analysis::AnalyzeOptions {
                    title: plan.name.clone(),
                    contrasts,
                    ..Default::default()
                };
                write_report(&[sweep_dir], options, &out)?;
            }
            Ok(())
        }
        Command::Resume { dir, threads } => {
            install_thread_pool(threads)?;
            let stop = install_interrupt();
            let summary = sweep::resume(&dir, stop)?;
            println!(
                "{} resumed to completion, {} already done",
                summary.completed.len(),
                summary.skipped.len()
            );
            report_summary(&summary, &dir)
        }
        Command::Analyze(args) => {
            let options = args.options()?;
            write_report(&args.runs, options, &args.out)
        }
        Command::Inspect { run } => {
            print!(
                "{}",
                without_panics(&format!("inspecting {}", run.display()), || {
                    necrosis_analysis::inspect_run(&run)
                })?
            );
            Ok(())
        }
        Command::Activations { out, names } => {
            let curves = activation_curves(&names)?;
            let files = necrosis_analysis::plot_activation_functions(&curves, &out)?;
            for f in files {
                println!("{}", f.display());
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn grid_flags_make_the_product_of_activations_rates_and_seeds() {
        let cli = Cli::parse_from(["necrosis-report", "run", "--seeds", "3", "--lr", "0.01,0.1"]);
        let Command::Run(args) = cli.command else {
            panic!("a run command")
        };
        let runs = args.plan().unwrap().runs;
        // The 5 default activations × 2 rates × 3 seeds, activation outermost.
        assert_eq!(runs.len(), 30);
        assert_eq!(
            (runs[0].activation.as_str(), runs[0].lr, runs[0].seed),
            ("relu", 0.01, 0)
        );
        assert_eq!(
            (runs[29].activation.as_str(), runs[29].lr, runs[29].seed),
            ("relu-softsign", 0.1, 2)
        );
    }

    #[test]
    fn a_setting_is_named_by_its_flag_wherever_it_sits_in_the_chain() {
        let invalid = |key| InvalidConfig {
            key,
            problem: "must be at least 1".into(),
        };
        let bare = anyhow::Error::from(invalid("batch_size"));
        assert_eq!(user_message(&bare), "--batch-size must be at least 1");
        let wrapped = anyhow::Error::from(invalid("probe_size")).context("run 3/8 digits-relu");
        assert_eq!(
            user_message(&wrapped),
            "run 3/8 digits-relu: --probe-size must be at least 1"
        );
        let activation = anyhow::Error::from(invalid("activation"));
        assert!(user_message(&activation).starts_with("--activations "));
    }

    #[test]
    fn a_panic_outside_the_record_readers_is_reported_as_a_bug() {
        let err = without_panics("measuring the runs", || -> Result<()> {
            panic!("index out of bounds: the len is 3 but the index is 7")
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("measuring the runs: internal error"),
            "{err}"
        );
        assert!(
            err.contains("index is 7") && !err.contains("corrupt"),
            "{err}"
        );
    }
}
