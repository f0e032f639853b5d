//! The flags of `necrosis-report` and its subcommands (clap's derive): what a user can type, with
//! the help texts. [`crate::cli`] turns them into plans and options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "necrosis-report",
    version,
    about = "Train CNNs with different activations, record what every neuron does each epoch, and report which activation keeps neurons alive and converges faster."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a sweep (activations × learning rates × seeds) and write its report.
    #[command(
        after_help = "Examples:\n  necrosis-report run                      # demo sweep on the embedded digits\n  necrosis-report run --dataset mnist --data-dir ../shared/data/mnist \\\n      --activations relu,relu-softsign --seeds 2 --epochs 3 --train-limit 10000"
    )]
    Run(Box<RunArgs>),
    /// Continue interrupted runs: DIR is a run directory or a sweep folder.
    #[command(after_help = "Example:\n  necrosis-report resume runs/digits")]
    Resume {
        dir: PathBuf,
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Analyse run directories or sweep folders and write a report (HTML, Markdown, figures, tables).
    #[command(
        after_help = "Example:\n  necrosis-report analyze runs/mnist --out reports/mnist --baseline relu --target-acc 0.98"
    )]
    Analyze(AnalyzeArgs),
    /// Print a terminal summary of one run.
    #[command(
        after_help = "Example:\n  necrosis-report inspect runs/digits/digits-relu-lr0.01-s0-ec05d988"
    )]
    Inspect { run: PathBuf },
    /// Draw each activation function and its derivative (the study's figure) into DIR.
    #[command(after_help = "Example:\n  necrosis-report activations --out figures/")]
    Activations {
        #[arg(long)]
        out: PathBuf,
        /// Comma list of activations to draw (default: all built-ins).
        #[arg(long, value_delimiter = ',')]
        names: Vec<String>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// digits (embedded), mnist, fashion-mnist, idx, cifar10, cifar100, folder, synthetic.
    #[arg(long, default_value = "digits")]
    pub dataset: String,
    /// Folder with the dataset's files (all datasets but digits and synthetic).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Comma list of activation names.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "relu,softplus,softsign,relu-softplus,relu-softsign"
    )]
    pub activations: Vec<String>,
    /// Number of seeds (0..N); ignored when --seed-list is given.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Explicit comma list of seeds.
    #[arg(long, value_delimiter = ',')]
    pub seed_list: Vec<u64>,
    /// Training epochs; a comma list is a sweep factor (as for every setting below).
    #[arg(long, value_delimiter = ',', default_value = "10")]
    pub epochs: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "64")]
    pub batch_size: Vec<usize>,
    /// Learning rate; a comma list is a sweep factor.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.01",
        allow_negative_numbers = true
    )]
    pub lr: Vec<f64>,
    /// sgd or adam (PyTorch's defaults).
    #[arg(long, value_delimiter = ',', default_value = "sgd")]
    pub optimizer: Vec<String>,
    /// SGD's momentum (does not apply to adam).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.9",
        allow_negative_numbers = true
    )]
    pub momentum: Vec<f32>,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0",
        allow_negative_numbers = true
    )]
    pub weight_decay: Vec<f32>,
    /// constant, cosine, or step:EVERY:GAMMA.
    #[arg(long, value_delimiter = ',', default_value = "constant")]
    pub schedule: Vec<String>,
    /// lenet, cifar, cifar-bn, resnet20, or a spec like conv:32:3,act,pool:2,fc:128,act,fc:10
    /// (tokens: conv, act, pool, maxpool, avgpool, flatten, fc, bn, dropout:P, gap,
    /// res:OUT[:STRIDE]; see docs/records.md); repeat the flag for several (a spec holds commas).
    #[arg(long, default_value = "lenet")]
    pub arch: Vec<String>,
    /// Weight initialisation: he-uniform, he-normal, xavier-uniform, xavier-normal,
    /// lecun-normal, orthogonal, pytorch, rai (see docs/records.md).
    #[arg(long, value_delimiter = ',', default_value = "he-uniform")]
    pub init: Vec<String>,
    /// Bias initialisation: zero, a constant such as 0.01, or pytorch (U(±1/√fan_in)).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "zero",
        allow_negative_numbers = true
    )]
    pub bias_init: Vec<String>,
    /// Another initialisation for the output layer (the last fc); `same`: as --init.
    #[arg(long, value_delimiter = ',', default_value = "same")]
    pub output_init: Vec<String>,
    /// Training augmentation: none, flip, crop:P (random crop with padding P), crop:P+flip.
    #[arg(long, value_delimiter = ',', default_value = "none")]
    pub augment: Vec<String>,
    /// What to do to the network during training: none; redo:TAU:EVERY (re-initialise the
    /// τ-dormant neurons every EVERY epochs, or steps with a trailing s); cbp:RATE:MATURITY
    /// (continual backprop); shrink-perturb:SHRINK:SIGMA:EVERY.
    #[arg(long, value_delimiter = ',', default_value = "none")]
    pub intervention: Vec<String>,
    /// Probe samples (default 2048, or the whole training split if smaller).
    #[arg(long, value_delimiter = ',')]
    pub probe_size: Vec<usize>,
    /// Use only the first N training samples.
    #[arg(long, value_delimiter = ',')]
    pub train_limit: Vec<usize>,
    /// Leave out combinations: KEY=VALUE[|VALUE...] pairs joined by commas, all of which must
    /// match, e.g. `--exclude optimizer=adam,batch_size=128`; repeat for several rules.
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Add this grid's runs to a sweep folder started with another grid (otherwise an error).
    #[arg(long)]
    pub extend: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Sweep name (default: the dataset's name).
    #[arg(long)]
    pub name: Option<String>,
    /// folder: image side after resizing; synthetic: image side.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// folder: load images as grey.
    #[arg(long)]
    pub grayscale: bool,
    /// synthetic: training samples.
    #[arg(long)]
    pub synthetic_samples: Option<usize>,
    /// synthetic: colour channels (default 1; 3 for colour images).
    #[arg(long)]
    pub synthetic_channels: Option<usize>,
    /// Where the sweep's report goes (default: reports/<name>).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Do not write a report at the end.
    #[arg(long)]
    pub no_report: bool,
    /// A named contrast for the report (see `analyze --help`); repeatable.
    #[arg(long)]
    pub contrast: Vec<String>,
    /// Read the sweep's grid (datasets, activations, lr, seeds, arch, epochs...) from a TOML file
    /// instead of the grid flags; see docs/sweeps.md.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run only part I of N of the sweep (0 <= I < N), e.g. `--shard $SLURM_ARRAY_TASK_ID/8`:
    /// the parts are disjoint and together are the whole sweep.
    #[arg(long)]
    pub shard: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct AnalyzeArgs {
    /// Run directories or sweep folders.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    /// Compare every activation against this one.
    #[arg(long, default_value = "relu")]
    pub baseline: String,
    /// Compare all pairs instead of against the baseline.
    #[arg(long)]
    pub all_pairs: bool,
    /// Absolute test-accuracy target for convergence speed, in [0, 1].
    #[arg(long)]
    pub target_acc: Option<f64>,
    /// Epochs a neuron must stay dead before the end to count as irreversibly dead.
    #[arg(long, default_value_t = 2)]
    pub dead_window: usize,
    /// Threshold of mean f'(z) below which a neuron is gradient-starved.
    #[arg(long, default_value_t = 1e-3)]
    pub starved_eps: f64,
    /// A named contrast between two conditions, tested besides the baseline comparisons:
    /// `KEY=VALUE,... vs KEY=VALUE,...` over the settings that vary among the runs, e.g.
    /// `activation=relu,optimizer=adam vs activation=relu-softsign,optimizer=sgd`; repeatable.
    #[arg(long)]
    pub contrast: Vec<String>,
}
