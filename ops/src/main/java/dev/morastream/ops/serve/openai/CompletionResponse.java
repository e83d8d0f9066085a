package dev.morastream.ops.serve.openai;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.annotation.JsonNaming;
import java.util.List;

/**
 * A completion, a chat completion, or one server-sent chunk of either: OpenAI's fields plus
 * {@code adapter_version}, the exact version that answered (also in {@code model} and
 * {@code system_fingerprint}).
 *
 * @param object {@code text_completion}, {@code chat.completion} or {@code chat.completion.chunk}
 * @param created seconds since the epoch
 * @param usage absent from the chunks that carry text
 */
@JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
public record CompletionResponse(String id, String object, long created, String model, String systemFingerprint,
        String adapterVersion, List<? extends Choice> choices, @JsonInclude(JsonInclude.Include.NON_NULL) Usage usage) {

    /** The response {@code servedBy} (the base name or {@code domain@vN}) answered. */
    public static CompletionResponse of(String id, String object, long created, String servedBy, List<? extends Choice> choices,
            Usage usage) {
        return new CompletionResponse(id, object, created, servedBy, "mora-" + servedBy, servedBy, choices, usage);
    }

    /** One element of {@code choices}. */
    public sealed interface Choice permits TextChoice, ChatChoice, DeltaChoice {}

    /**
     * A completions choice, or a completions chunk (with the text so far and null logprobs).
     *
     * @param logprobs {@link Logprobs.Completion} when asked for, else null
     * @param finishReason {@code stop} or {@code length}; null in a chunk before the last
     */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    public record TextChoice(int index, String text, Logprobs.Completion logprobs, String finishReason) implements Choice {}

    /** @param logprobs {@link Logprobs.Chat} when asked for, else null */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    public record ChatChoice(int index, Message message, Logprobs.Chat logprobs, String finishReason) implements Choice {}

    /** A chat chunk's choice: the text it adds (logprobs are always null in a stream). */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    public record DeltaChoice(int index, Delta delta, Logprobs.Chat logprobs, String finishReason) implements Choice {}

    /** The assistant's answer ({@code refusal} is always null here). */
    public record Message(String role, String content, String refusal) {
        public static Message assistant(String content) {
            return new Message("assistant", content, null);
        }
    }

    /** @param role {@code assistant} in the first chunk, absent after */
    public record Delta(@JsonInclude(JsonInclude.Include.NON_NULL) String role, String content) {}

    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    public record Usage(long promptTokens, long completionTokens, long totalTokens) {
        public static Usage of(long promptTokens, long completionTokens) {
            return new Usage(promptTokens, completionTokens, promptTokens + completionTokens);
        }
    }
}
