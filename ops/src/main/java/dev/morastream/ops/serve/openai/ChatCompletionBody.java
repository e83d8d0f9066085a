package dev.morastream.ops.serve.openai;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonUnwrapped;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.annotation.JsonNaming;

/**
 * The body of {@code POST /v1/chat/completions}, raw values as {@link CommonParams} holds them.
 * The tool and function parameters are known only to be refused with a message saying so.
 *
 * @param common the shared parameters (inline on the wire)
 * @param messages a non-empty array of {@link Message}
 * @param maxCompletionTokens {@code max_tokens} under its newer name ({@code max_tokens} wins when both are given)
 * @param topLogprobs top-k of the log-probabilities, with {@code "logprobs": true} (integer)
 * @param responseFormat only {@code {"type": "text"}} is supported
 */
@JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
@JsonIgnoreProperties(ignoreUnknown = true)
public record ChatCompletionBody(@JsonUnwrapped CommonParams common, JsonNode messages, JsonNode maxCompletionTokens,
        JsonNode topLogprobs, JsonNode tools, JsonNode toolChoice, JsonNode functions, JsonNode functionCall,
        JsonNode parallelToolCalls, JsonNode responseFormat) implements OpenAiRequest {

    /**
     * One element of {@code messages}.
     *
     * @param role {@code system}, {@code user} or {@code assistant} (string, required)
     * @param content a string or an array of {@code {"type": "text", "text": string}} parts
     * @param name accepted and ignored (string)
     */
    @JsonIgnoreProperties(ignoreUnknown = true)
    public record Message(JsonNode role, JsonNode content, JsonNode name) {}
}
