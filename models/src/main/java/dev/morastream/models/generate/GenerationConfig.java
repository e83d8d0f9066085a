package dev.morastream.models.generate;

import java.util.List;

/**
 * How to generate a continuation.
 *
 * @param maxNewTokens most tokens to generate ({@code >= 0})
 * @param temperature softmax temperature; {@code <= 0} means greedy (argmax)
 * @param topP nucleus sampling mass in {@code (0, 1]}; {@code 1.0} turns it off
 * @param seed seed of the sampler: same seed, same prompt, same model, same tokens
 * @param stopStrings generation stops when the text contains one of these; the text is cut
 *     before it (each must be non-empty)
 * @param stopOnEos whether an end-of-sequence id of the tokenizer ends generation
 */
public record GenerationConfig(
        int maxNewTokens,
        double temperature,
        double topP,
        long seed,
        List<String> stopStrings,
        boolean stopOnEos) {

    public GenerationConfig {
        if (maxNewTokens < 0) {
            throw new IllegalArgumentException("maxNewTokens must be >= 0, got " + maxNewTokens);
        }
        if (Double.isNaN(temperature)) {
            throw new IllegalArgumentException("temperature is NaN");
        }
        if (!(topP > 0 && topP <= 1)) {
            throw new IllegalArgumentException("topP must be in (0, 1], got " + topP);
        }
        stopStrings = List.copyOf(stopStrings);
        for (String s : stopStrings) {
            if (s.isEmpty()) {
                throw new IllegalArgumentException("stop strings must not be empty");
            }
        }
    }

    /** Argmax decoding of at most {@code maxNewTokens}, stopping on EOS, no stop strings. */
    public static GenerationConfig greedy(int maxNewTokens) {
        return new GenerationConfig(maxNewTokens, 0.0, 1.0, 0L, List.of(), true);
    }

    /** Temperature and nucleus sampling with a seed, stopping on EOS, no stop strings. */
    public static GenerationConfig sampling(int maxNewTokens, double temperature, double topP, long seed) {
        return new GenerationConfig(maxNewTokens, temperature, topP, seed, List.of(), true);
    }

    /** Whether tokens are picked by argmax. */
    public boolean isGreedy() {
        return temperature <= 0;
    }

    public GenerationConfig withStopStrings(List<String> stops) {
        return new GenerationConfig(maxNewTokens, temperature, topP, seed, stops, stopOnEos);
    }

    public GenerationConfig withStopOnEos(boolean stop) {
        return new GenerationConfig(maxNewTokens, temperature, topP, seed, stopStrings, stop);
    }

    public GenerationConfig withSeed(long newSeed) {
        return new GenerationConfig(maxNewTokens, temperature, topP, newSeed, stopStrings, stopOnEos);
    }
}
