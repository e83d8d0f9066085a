package dev.morastream.ops.serve;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.morastream.models.llama.LlamaConfig;
import dev.morastream.models.tokenizer.TextTokenizer;
import dev.morastream.ops.serve.openai.ChatCompletionBody;
import dev.morastream.ops.serve.openai.CompletionBody;
import dev.morastream.ops.serve.openai.CompletionResponse;
import dev.morastream.ops.serve.openai.ErrorBody;
import dev.morastream.ops.serve.openai.Logprobs;
import dev.morastream.ops.serve.openai.ModelList;
import dev.morastream.ops.serve.openai.OpenAiJson;
import dev.morastream.ops.serve.openai.CommonParams;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** The protocol records alone: request JSON → record → {@link CompletionRequest}, and response records → JSON text. */
class OpenAiProtocolTest {
    static final TextTokenizer TOK = TextTokenizer.forModel(ServeFixture.TINY, LlamaConfig.read(ServeFixture.TINY));
    static final int CONTEXT = 256;

    static JsonNode tree(String json) throws Exception {
        return OpenAiJson.read(json.getBytes(StandardCharsets.UTF_8));
    }

    static CompletionRequest completion(String json) throws Exception {
        return CompletionRequest.parse(tree(json), false, 64, 4, TOK, ChatTemplate.fixed(), CONTEXT);
    }

    static CompletionRequest chat(String json) throws Exception {
        return CompletionRequest.parse(tree(json), true, 64, 4, TOK, ChatTemplate.fixed(), CONTEXT);
    }

    // ---- requests ----

    @Test
    void theKnownParametersAreTheRecordsWireNames() {
        Set<String> common = Set.of("model", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop", "seed",
                "logprobs", "presence_penalty", "frequency_penalty", "logit_bias", "user");
        assertEquals(common, OpenAiJson.parameterNames(CommonParams.class));
        assertEquals(union(common, Set.of("prompt", "echo", "best_of", "suffix")), OpenAiJson.parameterNames(CompletionBody.class));
        assertEquals(union(common, Set.of("messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "functions",
                "function_call", "parallel_tool_calls", "response_format")), OpenAiJson.parameterNames(ChatCompletionBody.class));
        assertEquals(Set.of("role", "content", "name"), OpenAiJson.parameterNames(ChatCompletionBody.Message.class));
    }

    @Test
    void bindingKeepsRawValuesAndTellsAbsentFromNull() throws Exception {
        CompletionBody b = OpenAiJson.bind(tree("{\"model\":\"tiny\",\"prompt\":[1,2],\"max_tokens\":3,\"n\":null,\"best_of\":2}"),
                CompletionBody.class);
        assertEquals("tiny", b.common().model().asText());
        assertEquals(3, b.common().maxTokens().asInt());
        assertTrue(b.prompt().isArray());
        assertEquals(2, b.bestOf().asInt());
        assertTrue(b.common().n() == null || b.common().n().isNull(), "null means not given");
        assertNull(b.echo());
        ChatCompletionBody c = OpenAiJson.bind(tree("{\"model\":\"m\",\"messages\":[],\"max_completion_tokens\":5,\"top_p\":0.5}"),
                ChatCompletionBody.class);
        assertEquals(5, c.maxCompletionTokens().asInt());
        assertEquals(0.5, c.common().topP().asDouble());
        assertNull(c.common().maxTokens());
    }

    @Test
    void aStringPromptIsFramedAndTheParametersAreRead() throws Exception {
        CompletionRequest r = completion("{\"model\":\"tiny\",\"prompt\":\"Q: hi\",\"max_tokens\":3,\"temperature\":0,\"top_p\":0.9,"
                + "\"seed\":5,\"stop\":\"\\n\",\"logprobs\":2,\"echo\":true,\"n\":2,\"best_of\":3,\"user\":\"u\"}");
        assertEquals("tiny", r.model);
        assertEquals(1, r.prompts.size());
        assertEquals("Q: hi", r.prompts.get(0).text());
        assertArrayEquals(TOK.encodeFramed("Q: hi", false), r.prompts.get(0).ids());
        assertEquals(3, r.cfg.maxNewTokens());
        assertEquals(0.0, r.cfg.temperature());
        assertEquals(0.9, r.cfg.topP());
        assertEquals(5, r.cfg.seed());
        assertEquals(List.of("\n"), r.cfg.stopStrings());
        assertEquals(2, r.logprobs);
        assertTrue(r.echo);
        assertEquals(2, r.n);
        assertEquals(3, r.bestOf);
        assertEquals(-1, completion("{\"model\":\"tiny\",\"prompt\":\"Q:\"}").logprobs);
        assertEquals(16, completion("{\"model\":\"tiny\",\"prompt\":\"Q:\"}").cfg.maxNewTokens());
    }

    @Test
    void everyPromptForm() throws Exception {
        CompletionRequest strings = completion("{\"model\":\"tiny\",\"prompt\":[\"a\",\"bc\"]}");
        assertEquals(List.of("a", "bc"), strings.prompts.stream().map(CompletionRequest.Prompt::text).toList());
        assertArrayEquals(TOK.encodeFramed("bc", false), strings.prompts.get(1).ids());
        int[] ids = TOK.encode("Q: x");
        CompletionRequest tokens = completion("{\"model\":\"tiny\",\"prompt\":" + Arrays.toString(ids) + "}");
        assertEquals(1, tokens.prompts.size());
        assertArrayEquals(ids, tokens.prompts.get(0).ids(), "token ids are used as given (no BOS)");
        assertEquals("Q: x", tokens.prompts.get(0).text());
        CompletionRequest lists = completion("{\"model\":\"tiny\",\"prompt\":[" + Arrays.toString(ids) + ",[5,6]]}");
        assertEquals(2, lists.prompts.size());
        assertArrayEquals(new int[] {5, 6}, lists.prompts.get(1).ids());
        ApiError e = assertThrows(ApiError.class, () -> completion("{\"model\":\"tiny\",\"prompt\":[[1],\"x\",7]}"));
        assertEquals("prompt[2]", e.param);
        assertEquals("invalid_type", e.code);
        assertEquals("'prompt[2]' must be a string or a non-empty array of token ids, got 7", e.getMessage());
    }

    @Test
    void chatMessagesWithStringOrPartsAndStreamOptions() throws Exception {
        CompletionRequest parts = chat("{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"H\"},"
                + "{\"type\":\"text\",\"text\":\"i\"}],\"name\":\"n\"}],\"max_completion_tokens\":4,\"stream\":true,"
                + "\"stream_options\":{\"include_usage\":true}}");
        CompletionRequest plain = chat("{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}");
        assertTrue(parts.chat);
        assertEquals(plain.prompts.get(0).text(), parts.prompts.get(0).text());
        assertArrayEquals(plain.prompts.get(0).ids(), parts.prompts.get(0).ids());
        assertEquals(4, parts.cfg.maxNewTokens());
        assertTrue(parts.stream && parts.usageInStream);
        assertEquals(2, chat("{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"logprobs\":true,\"top_logprobs\":2}")
                .logprobs);
        ApiError e = assertThrows(ApiError.class, () -> chat("{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":null}]}"));
        assertEquals("'messages[0].content' must be a string or an array of text parts, got null", e.getMessage());
        ApiError missing = assertThrows(ApiError.class, () -> chat("{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\"}]}"));
        assertEquals("'messages[0].content' must be a string or an array of text parts, got nothing", missing.getMessage());
        ApiError other = assertThrows(ApiError.class, () -> chat("{\"model\":\"tiny\",\"messages\":[],\"echo\":true}"));
        assertEquals("Unrecognized request argument supplied: 'echo' (it belongs to /v1/completions)", other.getMessage());
        ApiError typo = assertThrows(ApiError.class, () -> chat("{\"model\":\"tiny\",\"mesages\":[]}"));
        assertEquals("Unrecognized request argument supplied: 'mesages'", typo.getMessage());
    }

    // ---- responses ----

    @Test
    void aCompletionIsWrittenWithOpenAisFieldsInOrderAndItsNulls() {
        Logprobs.Completion lp = new Logprobs.Completion(List.of("", "a"), Arrays.asList(null, -0.5),
                Arrays.asList(null, new LinkedHashMap<>(Map.of("a", -0.5))), List.of(0, 0));
        CompletionResponse r = CompletionResponse.of("cmpl-1", "text_completion", 7, "facts@v2",
                List.of(new CompletionResponse.TextChoice(0, "a", lp, "length"), new CompletionResponse.TextChoice(1, "b", null, "stop")),
                CompletionResponse.Usage.of(2, 3));
        assertEquals("{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":7,\"model\":\"facts@v2\","
                + "\"system_fingerprint\":\"mora-facts@v2\",\"adapter_version\":\"facts@v2\",\"choices\":["
                + "{\"index\":0,\"text\":\"a\",\"logprobs\":{\"tokens\":[\"\",\"a\"],\"token_logprobs\":[null,-0.5],"
                + "\"top_logprobs\":[null,{\"a\":-0.5}],\"text_offset\":[0,0]},\"finish_reason\":\"length\"},"
                + "{\"index\":1,\"text\":\"b\",\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                + "\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3,\"total_tokens\":5}}", OpenAiJson.write(r));
    }

    @Test
    void chatAnswersAndChunks() {
        Logprobs.Token alt = new Logprobs.Token("b", -2.0, new int[] {98}, null);
        CompletionResponse chat = CompletionResponse.of("chatcmpl-1", "chat.completion", 1, "tiny",
                List.of(new CompletionResponse.ChatChoice(0, CompletionResponse.Message.assistant("a"),
                        new Logprobs.Chat(List.of(new Logprobs.Token("a", -0.25, new int[] {97}, List.of(alt)))), "length")),
                CompletionResponse.Usage.of(1, 1));
        assertEquals("{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"tiny\",\"system_fingerprint\":\"mora-tiny\","
                + "\"adapter_version\":\"tiny\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"a\",\"refusal\":null},"
                + "\"logprobs\":{\"content\":[{\"token\":\"a\",\"logprob\":-0.25,\"bytes\":[97],\"top_logprobs\":"
                + "[{\"token\":\"b\",\"logprob\":-2.0,\"bytes\":[98]}]}]},\"finish_reason\":\"length\"}],"
                + "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,\"total_tokens\":2}}", OpenAiJson.write(chat));
        String head = "{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"tiny\",\"system_fingerprint\":\"mora-tiny\","
                + "\"adapter_version\":\"tiny\",\"choices\":[";
        assertEquals(head + "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}",
                OpenAiJson.write(CompletionResponse.of("c", "chat.completion.chunk", 1, "tiny",
                        List.of(new CompletionResponse.DeltaChoice(0, new CompletionResponse.Delta("assistant", ""), null, null)), null)));
        assertEquals(head + "{\"index\":0,\"delta\":{\"content\":\"x\"},\"logprobs\":null,\"finish_reason\":\"stop\"}]}",
                OpenAiJson.write(CompletionResponse.of("c", "chat.completion.chunk", 1, "tiny",
                        List.of(new CompletionResponse.DeltaChoice(0, new CompletionResponse.Delta(null, "x"), null, "stop")), null)));
        assertEquals(head + "],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6}}",
                OpenAiJson.write(CompletionResponse.of("c", "chat.completion.chunk", 1, "tiny", List.of(), CompletionResponse.Usage.of(4, 2))));
    }

    @Test
    void modelsAndErrors() {
        assertEquals("{\"object\":\"list\",\"data\":[{\"id\":\"tiny\",\"object\":\"model\",\"created\":3,\"owned_by\":\"morastream\","
                + "\"root\":\"tiny\",\"parent\":null,\"max_model_len\":256},{\"id\":\"facts\",\"object\":\"model\",\"created\":3,"
                + "\"owned_by\":\"morastream\",\"root\":\"facts@v1\",\"parent\":\"tiny\",\"max_model_len\":256,\"adapter_version\":\"facts@v1\"}]}",
                OpenAiJson.write(ModelList.of(List.of(ModelList.Model.of("tiny", "tiny", null, 3, 256, null),
                        ModelList.Model.of("facts", "facts@v1", "tiny", 3, 256, "facts@v1")))));
        assertEquals("{\"error\":{\"message\":\"no\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}",
                OpenAiJson.write(ErrorBody.of("no", "invalid_request_error", null, null)));
        assertEquals("{\"error\":{\"message\":\"'n' bad\",\"type\":\"invalid_request_error\",\"param\":\"n\",\"code\":\"invalid_type\"}}",
                OpenAiJson.write(ErrorBody.of("'n' bad", "invalid_request_error", "n", "invalid_type")));
        assertEquals("{\"error\":{\"message\":\"gone\",\"type\":\"server_error\"}}", OpenAiJson.write(ErrorBody.InStream.of("gone", "server_error")));
    }

    static Set<String> union(Set<String> a, Set<String> b) {
        Set<String> out = new java.util.HashSet<>(a);
        out.addAll(b);
        return out;
    }
}
