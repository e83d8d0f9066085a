package dev.morastream.ops.serve.openai;

import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.annotation.JsonNaming;
import java.util.List;

/** {@code GET /v1/models}: {@code {"object": "list", "data": [...]}}. */
public record ModelList(String object, List<Model> data) {
    public static ModelList of(List<Model> data) {
        return new ModelList("list", data);
    }

    /**
     * One model, vLLM style: {@code root} is what it resolves to, {@code parent} the base model of an
     * adapter (null for the base).
     *
     * @param adapterVersion the version a domain or version names; absent for the base model
     */
    @JsonNaming(PropertyNamingStrategies.SnakeCaseStrategy.class)
    public record Model(String id, String object, long created, String ownedBy, String root, String parent, int maxModelLen,
            @JsonInclude(JsonInclude.Include.NON_NULL) String adapterVersion) {
        public static Model of(String id, String root, String parent, long created, int maxModelLen, String adapterVersion) {
            return new Model(id, "model", created, "morastream", root, parent, maxModelLen, adapterVersion);
        }
    }
}
