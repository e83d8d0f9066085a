package dev.morastream.ops.serve;

import dev.morastream.ops.serve.openai.ErrorBody;
import dev.morastream.ops.serve.openai.OpenAiJson;
import java.nio.charset.StandardCharsets;
import org.apache.pekko.http.javadsl.model.ContentTypes;
import org.apache.pekko.http.javadsl.model.HttpResponse;
import org.apache.pekko.http.javadsl.model.StatusCodes;

/** JSON responses: a body record written by {@link OpenAiJson}, and an {@link ApiError} as its {@link ErrorBody}. */
final class Responses {
    private Responses() {}

    static HttpResponse json(int status, Object body) {
        return HttpResponse.create().withStatus(StatusCodes.get(status))
                .withEntity(ContentTypes.APPLICATION_JSON, OpenAiJson.write(body).getBytes(StandardCharsets.UTF_8));
    }

    static HttpResponse error(ApiError e) {
        return json(e.status, ErrorBody.of(e.getMessage(), e.type, e.param, e.code));
    }
}
