package dev.morastream.ops.serve.openai;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.annotation.JsonNaming;
import java.util.List;
import java.util.Map;

/** The two shapes of {@code choices[].logprobs}: the completions API's columns and the chat API's entries. */
public final class Logprobs {
    private Logprobs() {}

    /**
     * Parallel columns, one row per token (with echo the prompt's first); the very first prompt
     * token has null in {@code token_logprobs} and {@code top_logprobs}.
     *
     * @param topLogprobs per token, the alternatives' pieces to their logprob (insertion order)
     * @param textOffset where each token starts in the choice's text
     */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    public record Completion(List<String> tokens, List<Double> tokenLogprobs, List<Map<String, Double>> topLogprobs,
            List<Integer> textOffset) {}

    /** {@code {"content": [...]}}, one entry per generated token. */
    public record Chat(List<Token> content) {}

    /**
     * @param bytes the token's UTF-8 bytes
     * @param topLogprobs the alternatives, themselves without {@code top_logprobs} (absent there)
     */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    public record Token(String token, double logprob, int[] bytes, @JsonInclude(JsonInclude.Include.NON_NULL) List<Token> topLogprobs) {}
}
