package dev.morastream.actors.evaluator;

import java.util.List;

/**
 * What a trainer has trained on, sampled: the same sample scores the candidate and the adapter in
 * service, so their memorisation numbers compare.
 *
 * @param facts prompt/completion pairs from trained records (memorisation character accuracy)
 * @param texts trained token rows, each {@code (T + 1)} ids (memorisation loss)
 */
public record Sample(List<Fact> facts, List<int[]> texts) {
    /** A trained prompt and the completion the model should reproduce after it. */
    public record Fact(String prompt, String completion) {}

    public static final Sample EMPTY = new Sample(List.of(), List.of());

    public Sample {
        facts = List.copyOf(facts);
        texts = texts.stream().map(int[]::clone).toList();
    }
}
