// Gift sounds, generated in the page with WebAudio: no audio files ship with giftwire, so there
// is nothing to license (docs/overlay.md, "Sounds"). One short motif per gift tier, bigger gifts
// longer and richer; the volume is the creator's setting (0..100).

// Per tier: the notes (Hz) played one after another, each note's length (s), and the waveform.
const TIERS = {
  1: { notes: [880], len: 0.12, wave: "sine" },
  2: { notes: [660, 880], len: 0.12, wave: "triangle" },
  3: { notes: [523, 659, 784], len: 0.14, wave: "triangle" },
  4: { notes: [523, 659, 784, 1047], len: 0.16, wave: "square" },
  5: { notes: [392, 523, 659, 784, 1047, 1319], len: 0.18, wave: "sawtooth" },
};

export class GiftSounds {
  constructor() {
    this.ctx = null;
    this.played = 0; // motifs started (the page's hook reads it)
  }

  /** Play the tier's motif at `volume` percent; false when the page may not make sound. */
  play(tier, volume) {
    const AudioContextClass = window.AudioContext || window.webkitAudioContext;
    if (!AudioContextClass || volume <= 0) return false;
    if (!this.ctx) this.ctx = new AudioContextClass();
    // OBS browser sources may play at once; a normal tab only after a click (then resume works).
    if (this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
    const motif = TIERS[tier] || TIERS[1];
    const gain = this.ctx.createGain();
    gain.gain.value = (Math.min(100, volume) / 100) * 0.25; // leave the stream's own audio room
    gain.connect(this.ctx.destination);
    let t = this.ctx.currentTime;
    for (const freq of motif.notes) {
      const osc = this.ctx.createOscillator();
      const env = this.ctx.createGain();
      osc.type = motif.wave;
      osc.frequency.value = freq;
      env.gain.setValueAtTime(0, t);
      env.gain.linearRampToValueAtTime(1, t + 0.01);
      env.gain.exponentialRampToValueAtTime(0.001, t + motif.len);
      osc.connect(env).connect(gain);
      osc.start(t);
      osc.stop(t + motif.len);
      t += motif.len * 0.8;
    }
    this.played++;
    return true;
  }
}
