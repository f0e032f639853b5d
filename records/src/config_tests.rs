//! Tests of the run configuration: schedules, dataset names, validation, and the identity.

use super::*;

#[test]
fn schedules_give_the_documented_rates() {
    let constant: Schedule = "constant".parse().unwrap();
    assert_eq!(constant.lr_at(0.1, 5, 10), 0.1);
    let step: Schedule = "step:2:0.5".parse().unwrap();
    // 0.8 halved every 2 epochs: epochs 1-2 at 0.8, 3-4 at 0.4, 5 at 0.2.
    assert_eq!(
        [1, 2, 3, 4, 5].map(|e| step.lr_at(0.8, e, 5)),
        [0.8, 0.8, 0.4, 0.4, 0.2]
    );
    // Cosine over 4 epochs: ½(1 + cos(π·(e−1)/4)); epoch 3 gives ½(1 + cos(π/2)) = ½.
    let cosine = Schedule::Cosine;
    assert_eq!(cosine.lr_at(1.0, 1, 4), 1.0);
    assert!((cosine.lr_at(1.0, 3, 4) - 0.5).abs() < 1e-6);
    assert!("step:0:0.5".parse::<Schedule>().is_err());
    let err = "linear".parse::<Schedule>().unwrap_err();
    assert_eq!(err.key, "schedule");
    assert!(err.problem.contains("'linear'"), "{err}");
}

#[test]
fn dataset_names_round_trip_and_unknown_lists_valid_names() {
    for kind in DatasetKind::ALL {
        assert_eq!(kind.name().parse::<DatasetKind>().unwrap(), kind);
        assert_eq!(
            serde_json::to_value(kind).unwrap(),
            serde_json::json!(kind.name())
        );
    }
    let err = "imagenet".parse::<DatasetKind>().unwrap_err().to_string();
    assert!(
        err.contains("imagenet") && err.contains("fashion-mnist"),
        "{err}"
    );
}

#[test]
fn validation_names_the_setting() {
    let mut config = RunConfig::new(DatasetSpec::new(DatasetKind::Digits), "relu");
    config.validate().unwrap();
    config.batch_size = 0;
    assert_eq!(config.validate().unwrap_err().key, "batch_size");
    config.batch_size = 1;
    config.optimizer = OptimizerConfig::Sgd {
        momentum: f32::INFINITY,
        weight_decay: 0.0,
    };
    let err = config.validate().unwrap_err();
    assert_eq!(err.to_string(), "momentum must be in [0, 1), got inf");
}

#[test]
fn the_identity_is_the_hash_of_the_canonical_settings() {
    let mut config = RunConfig::new(DatasetSpec::new(DatasetKind::Mnist), "relu-softsign");
    config.dataset.data_dir = Some("/somewhere/mnist".into());
    let canonical = config.canonical("abc123");
    // Keys sorted, the folder replaced by the checksum.
    assert_eq!(
        canonical,
        concat!(
            r#"{"activation":"relu-softsign","arch":"lenet","batch_size":64,"#,
            r#""data_checksum":"abc123","dataset":"mnist","epochs":10,"grayscale":false,"#,
            r#""image_size":null,"lr":0.01,"optimizer":{"kind":"sgd","momentum":0.8999999761581421,"#,
            r#""weight_decay":0.0},"probe_size":null,"schedule":{"kind":"constant"},"seed":0,"#,
            r#""synthetic_samples":null,"train_limit":null}"#
        )
    );
    // python3 -c "import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode()).hexdigest()[:8])" '<the text above>'
    assert_eq!(config.identity("abc123"), IDENTITY_OF_CANONICAL);
    // The folder is not part of it; the data and every setting are.
    config.dataset.data_dir = Some("/elsewhere".into());
    assert_eq!(config.identity("abc123"), IDENTITY_OF_CANONICAL);
    assert_ne!(config.identity("abc124"), IDENTITY_OF_CANONICAL);
    config.epochs = 11;
    assert_ne!(config.identity("abc123"), IDENTITY_OF_CANONICAL);
}

const IDENTITY_OF_CANONICAL: &str = "d63ae082";

#[test]
fn later_settings_enter_the_identity_only_when_set() {
    let config = RunConfig::new(DatasetSpec::new(DatasetKind::Mnist), "relu-softsign");
    let canonical = config.canonical("abc123");
    for key in [
        "init",
        "bias_init",
        "output_init",
        "augment",
        "intervention",
        "synthetic_channels",
    ] {
        assert!(
            !canonical.contains(key),
            "{key} at its default: {canonical}"
        );
    }
    let mut changed = config.clone();
    changed.init = InitScheme::XavierNormal;
    changed.bias_init = "0.01".parse().unwrap();
    changed.augment = "crop:4+flip".parse().unwrap();
    changed.intervention = "redo:0.1:1".parse().unwrap();
    let text = changed.canonical("abc123");
    assert!(
        text.contains(r#""intervention":"redo:0.1:1""#)
            && text.contains(r#""init":"xavier-normal""#)
            && text.contains(r#""bias_init":"0.01""#)
            && text.contains(r#""augment":"crop:4+flip""#),
        "{text}"
    );
    assert_ne!(changed.identity("abc123"), config.identity("abc123"));
    // A manifest written before these settings existed reads back with their defaults.
    let old: RunConfig = serde_json::from_str(&canonical).unwrap();
    assert_eq!(
        (old.init, old.augment, old.intervention),
        (
            InitScheme::HeUniform,
            Augment::default(),
            Intervention::None
        )
    );
    // A bias rule where rai draws every bias is refused in a hand-written configuration; with
    // another scheme for the output layer it sets that layer's bias.
    changed.bias_init = BiasInit::Pytorch;
    changed.init = InitScheme::Rai;
    assert_eq!(changed.validate().unwrap_err().key, "bias_init");
    changed.output_init = Some(InitScheme::XavierNormal);
    changed.validate().unwrap();
}

#[test]
fn synthetic_channels_are_optional_and_checked() {
    // Unset, the key is absent: the canonical text (and so the identity) of a run written
    // before the option existed is unchanged, and such a manifest still reads.
    let mut config = RunConfig::new(DatasetSpec::new(DatasetKind::Synthetic), "relu");
    let canonical = config.canonical("x");
    assert!(!canonical.contains("synthetic_channels"), "{canonical}");
    let json = serde_json::to_value(&config).unwrap();
    let read: RunConfig = serde_json::from_value(json).unwrap();
    assert_eq!(read.dataset.synthetic_channels, None);
    // Set, it is written, read back and part of the identity.
    config.dataset.synthetic_channels = Some(3);
    config.validate().unwrap();
    assert!(config.canonical("x").contains(r#""synthetic_channels":3"#));
    let read: RunConfig = serde_json::from_value(serde_json::to_value(&config).unwrap()).unwrap();
    assert_eq!(read, config);
    // 0 and more than 4 are rejected, naming the key.
    for bad in [0, 5] {
        config.dataset.synthetic_channels = Some(bad);
        let err = config.validate().unwrap_err();
        assert_eq!(err.key, "synthetic_channels");
        assert!(err.problem.contains(&bad.to_string()), "{err}");
    }
    config.dataset.synthetic_channels = Some(4);
    config.validate().unwrap();
    // Other kinds do not take it.
    let mut spec = DatasetSpec::new(DatasetKind::Cifar10);
    spec.synthetic_channels = Some(3);
    let err = spec.validate().unwrap_err();
    assert_eq!(err.key, "synthetic_channels");
    assert!(err.problem.contains("cifar10"), "{err}");
}

#[test]
fn run_directory_names_show_the_varying_settings() {
    let mut config = RunConfig::new(DatasetSpec::new(DatasetKind::FashionMnist), "relu");
    config.lr = 0.05;
    config.seed = 3;
    config.optimizer = OptimizerConfig::adam();
    config.batch_size = 32;
    assert_eq!(
        config.run_dir_name(&["activation", "seed"], "0badcafe"),
        "fashion-mnist-relu-lr0.05-s3-0badcafe"
    );
    assert_eq!(
        config.run_dir_name(&["optimizer", "batch_size", "momentum"], "0badcafe"),
        "fashion-mnist-relu-adam-bs32-lr0.05-s3-0badcafe"
    );
    config.arch = "conv:8:3,act,pool:2,fc:10".into();
    assert_eq!(
        config.run_dir_name(&["arch"], "0badcafe"),
        "fashion-mnist-relu-conv_8_3_act_pool_2_fc_10-lr0.05-s3-0badcafe"
    );
}
