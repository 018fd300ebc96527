//! Flink's StatusWatermarkValve: combines the watermarks of a task's input
//! channels. The combined watermark is the minimum over active channels;
//! idle and ended channels are excluded; when every channel is idle, the
//! furthest watermark among them counts, so progress made before the last
//! one went idle is not lost (as Flink does); it never goes backwards.

use sluice_core::Watermark;

#[derive(Clone, Copy, Debug)]
struct ChannelState {
    watermark: Watermark,
    idle: bool,
    ended: bool,
}

/// The watermark and idle status of each input channel, and their combination.
#[derive(Debug)]
pub struct StatusWatermarkValve {
    channels: Vec<ChannelState>,
    last_emitted: Watermark,
    idle: bool,
}

impl StatusWatermarkValve {
    /// A valve over `n` channels, all active, none having sent a watermark.
    pub fn new(n: usize) -> Self {
        Self {
            channels: vec![
                ChannelState { watermark: Watermark::MIN, idle: false, ended: false };
                n
            ],
            last_emitted: Watermark::MIN,
            idle: false,
        }
    }

    /// Channel `channel` sent `watermark`; returns the new combined watermark if it advanced.
    pub fn input_watermark(&mut self, channel: usize, watermark: Watermark) -> Option<Watermark> {
        let c = &mut self.channels[channel];
        if watermark > c.watermark {
            c.watermark = watermark;
        }
        // A watermark from an idle channel makes it active again.
        c.idle = false;
        self.advance()
    }

    /// Channel `channel` became idle (`true`) or active (`false`); returns
    /// the combined watermark if excluding or re-including it advanced it.
    pub fn input_idle(&mut self, channel: usize, idle: bool) -> Option<Watermark> {
        self.channels[channel].idle = idle;
        self.advance()
    }

    /// Channel `channel` ended: it no longer holds the watermark back.
    pub fn input_ended(&mut self, channel: usize) -> Option<Watermark> {
        self.channels[channel].ended = true;
        self.advance()
    }

    /// Whether every channel that has not ended is idle.
    pub fn all_idle(&self) -> bool {
        let mut active = self.channels.iter().filter(|c| !c.ended);
        active.clone().next().is_some() && active.all(|c| c.idle)
    }

    /// Whether the combined idle status changed since the last call; returns the new status.
    pub fn idle_changed(&mut self) -> Option<bool> {
        let now = self.all_idle();
        (now != self.idle).then(|| {
            self.idle = now;
            now
        })
    }

    fn advance(&mut self) -> Option<Watermark> {
        let live = self.channels.iter().filter(|c| !c.ended);
        let active_min = live.clone().filter(|c| !c.idle).map(|c| c.watermark).min();
        let combined = active_min.or_else(|| live.map(|c| c.watermark).max())?;
        (combined > self.last_emitted).then(|| {
            self.last_emitted = combined;
            combined
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_combined_watermark_is_the_minimum_over_channels() {
        let mut v = StatusWatermarkValve::new(2);
        assert_eq!(v.input_watermark(0, Watermark(10)), None);
        assert_eq!(v.input_watermark(1, Watermark(5)), Some(Watermark(5)));
        assert_eq!(v.input_watermark(1, Watermark(20)), Some(Watermark(10)));
    }

    #[test]
    fn the_combined_watermark_never_goes_backwards() {
        let mut v = StatusWatermarkValve::new(1);
        assert_eq!(v.input_watermark(0, Watermark(10)), Some(Watermark(10)));
        assert_eq!(v.input_watermark(0, Watermark(3)), None);
        assert_eq!(v.input_watermark(0, Watermark(11)), Some(Watermark(11)));
    }

    #[test]
    fn an_idle_channel_does_not_hold_the_watermark_back_until_it_is_active_again() {
        let mut v = StatusWatermarkValve::new(2);
        v.input_watermark(0, Watermark(100));
        assert_eq!(v.input_idle(1, true), Some(Watermark(100)));
        assert_eq!(
            v.input_watermark(1, Watermark(50)),
            None,
            "active again, but behind: no regression"
        );
        assert_eq!(v.input_watermark(0, Watermark(200)), None, "channel 1 at 50 holds it");
        assert_eq!(v.input_watermark(1, Watermark(150)), Some(Watermark(150)));
    }

    #[test]
    fn when_every_channel_is_idle_the_furthest_watermark_counts() {
        let mut v = StatusWatermarkValve::new(2);
        assert_eq!(v.input_watermark(0, Watermark(300)), None, "channel 1 holds it at MIN");
        assert_eq!(v.input_idle(0, true), None, "channel 1, active, is still at MIN");
        assert_eq!(v.input_idle(1, true), Some(Watermark(300)), "all idle: 300 is not lost");
    }

    #[test]
    fn an_ended_channel_is_excluded() {
        let mut v = StatusWatermarkValve::new(2);
        v.input_watermark(0, Watermark(7));
        assert_eq!(v.input_ended(1), Some(Watermark(7)));
    }

    #[test]
    fn all_channels_idle_is_reported_once_per_change() {
        let mut v = StatusWatermarkValve::new(2);
        v.input_idle(0, true);
        assert_eq!(v.idle_changed(), None);
        v.input_idle(1, true);
        assert_eq!(v.idle_changed(), Some(true));
        assert_eq!(v.idle_changed(), None);
        v.input_watermark(1, Watermark(1));
        assert_eq!(v.idle_changed(), Some(false));
    }
}
