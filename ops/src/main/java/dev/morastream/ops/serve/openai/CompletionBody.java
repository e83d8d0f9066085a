package dev.morastream.ops.serve.openai;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonUnwrapped;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.annotation.JsonNaming;

/**
 * The body of {@code POST /v1/completions}, raw values as {@link CommonParams} holds them.
 *
 * @param common the shared parameters (inline on the wire)
 * @param prompt a string, an array of strings, an array of token ids or an array of such arrays
 * @param echo return the prompt before the completion (boolean)
 * @param bestOf candidates generated per prompt, the {@code n} best returned (integer)
 * @param suffix not supported (refused when given)
 */
@JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
@JsonIgnoreProperties(ignoreUnknown = true)
public record CompletionBody(@JsonUnwrapped CommonParams common, JsonNode prompt, JsonNode echo, JsonNode bestOf, JsonNode suffix)
        implements OpenAiRequest {}
