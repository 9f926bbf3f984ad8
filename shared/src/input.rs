//! Client-side input sequencing: numbers each new input frame and keeps the newest
//! [`MAX_INPUT_FRAMES`] so that every `Input` message repeats them (a lost message loses
//! nothing; the server applies each sequence number once).

use std::collections::VecDeque;

use crate::ids::{InputSeq, Tick};
use crate::message::{ClientMessage, InputFrame, MAX_INPUT_FRAMES};

/// The newest input frames a client has produced.
#[derive(Debug, Clone)]
pub struct InputHistory {
    next: InputSeq,
    recent: VecDeque<InputFrame>,
}

impl Default for InputHistory {
    fn default() -> Self {
        Self::new()
    }
}

impl InputHistory {
    /// An empty history; the first frame gets sequence number 1.
    pub fn new() -> Self {
        Self {
            next: InputSeq(1),
            recent: VecDeque::with_capacity(MAX_INPUT_FRAMES),
        }
    }

    /// Records a new frame and returns its sequence number, or `None` once the sequence
    /// space is exhausted (the client must reconnect). `frame.seq` is ignored: the history
    /// numbers it.
    pub fn push(&mut self, frame: InputFrame) -> Option<InputSeq> {
        let seq = self.next;
        self.next = seq.next()?;
        if self.recent.len() == MAX_INPUT_FRAMES {
            self.recent.pop_front();
        }
        self.recent.push_back(InputFrame { seq, ..frame });
        Some(seq)
    }

    /// The `Input` message to send now: the newest frames, oldest first, and `ack`
    /// (the newest verified snapshot tick; `None` sends 0, "nothing yet").
    pub fn message(&self, ack: Option<Tick>) -> ClientMessage {
        ClientMessage::Input {
            ack_tick: ack.unwrap_or(Tick(0)),
            frames: self.recent.iter().copied().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_frames_in_order() {
        let mut h = InputHistory::new();
        for i in 0..10 {
            assert_eq!(
                h.push(InputFrame {
                    move_x: i,
                    ..InputFrame::default()
                }),
                Some(InputSeq(u32::from(i as u8) + 1))
            );
        }
        let ClientMessage::Input { ack_tick, frames } = h.message(Some(Tick(7))) else {
            panic!("an Input");
        };
        assert_eq!(ack_tick, Tick(7));
        let seqs: Vec<u32> = frames.iter().map(|f| f.seq.0).collect();
        assert_eq!(seqs, [3, 4, 5, 6, 7, 8, 9, 10]);
        let mut end = InputHistory {
            next: InputSeq(u32::MAX),
            recent: VecDeque::new(),
        };
        assert_eq!(end.push(InputFrame::default()), None);
    }
}
