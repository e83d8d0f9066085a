package dev.morastream.ops.serve.openai;

/** The body of a completions or chat completions request. */
public sealed interface OpenAiRequest permits CompletionBody, ChatCompletionBody {
    /** The parameters both endpoints share. */
    CommonParams common();
}
