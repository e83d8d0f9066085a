package dev.morastream.ops.serve.openai;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.annotation.JsonNaming;

/**
 * The parameters {@code /v1/completions} and {@code /v1/chat/completions} share, as sent (snake_case
 * on the wire). Each is the raw JSON value ({@code null}: absent; a JSON null: given as null) so
 * that the checks can name the parameter and what it got; see {@code CompletionRequest}.
 *
 * @param model base name, domain or exact {@code domain@vN} (string, required)
 * @param maxTokens new tokens to generate (integer)
 * @param temperature sampling temperature in [0, 2] (number)
 * @param topP nucleus mass in (0, 1] (number)
 * @param n choices per prompt (integer)
 * @param stream server-sent events (boolean)
 * @param streamOptions {@link StreamOptions} (object, only with stream)
 * @param stop one string or up to four
 * @param seed sampling seed (integer)
 * @param logprobs completions: top-k (integer); chat: whether to return them (boolean)
 * @param presencePenalty only 0 is supported (number)
 * @param frequencyPenalty only 0 is supported (number)
 * @param logitBias only empty is supported (object)
 * @param user accepted and ignored (string)
 */
@JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
@JsonIgnoreProperties(ignoreUnknown = true)
public record CommonParams(JsonNode model, JsonNode maxTokens, JsonNode temperature, JsonNode topP, JsonNode n, JsonNode stream,
        JsonNode streamOptions, JsonNode stop, JsonNode seed, JsonNode logprobs, JsonNode presencePenalty, JsonNode frequencyPenalty,
        JsonNode logitBias, JsonNode user) {

    /** {@code stream_options}. @param includeUsage a last chunk with the usage (boolean) */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    @JsonIgnoreProperties(ignoreUnknown = true)
    public record StreamOptions(JsonNode includeUsage) {}
}
