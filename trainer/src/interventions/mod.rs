//! The built-in interventions, each a [`Hook`] that [`Hook::intervenes`]: ReDo ([`redo`]),
//! continual backprop ([`cbp`]) and shrink-and-perturb ([`shrink_perturb`]). The training loop
//! only builds the one a run's configuration names, through [`hook_for`], and lends it a
//! [`crate::surgery::Surgery`]; a user's own intervention is a hook passed in `RunOptions`.

pub mod cbp;
pub mod redo;
pub mod shrink_perturb;

use crate::hooks::Hook;
use crate::model::SiteInfo;
use necrosis_records::intervention::{Intervention, Period};

/// The hook that carries out `intervention` on a network with these activation sites; `None`
/// for no intervention.
pub fn hook_for(intervention: &Intervention, sites: &[SiteInfo]) -> Option<Box<dyn Hook>> {
    match *intervention {
        Intervention::None => None,
        Intervention::Redo { tau, every } => Some(Box::new(redo::Redo::new(tau, every, sites))),
        Intervention::Cbp { rate, maturity } => {
            Some(Box::new(cbp::ContinualBackprop::new(rate, maturity, sites)))
        }
        Intervention::ShrinkPerturb {
            shrink,
            sigma,
            every,
        } => Some(Box::new(shrink_perturb::ShrinkPerturb {
            shrink: shrink as f32,
            sigma: sigma as f32,
            every,
        })),
    }
}

/// Whether a periodic intervention acts after the step that brings the count to `steps_taken`.
pub(crate) fn acts_after_step(every: Period, steps_taken: u64) -> bool {
    matches!(every, Period::Steps(n) if steps_taken.is_multiple_of(n))
}

/// Whether a periodic intervention acts at the end of `epoch`.
pub(crate) fn acts_at_epoch_end(every: Period, epoch: usize) -> bool {
    matches!(every, Period::Epochs(n) if (epoch as u64).is_multiple_of(n))
}

#[cfg(test)]
mod tests;
