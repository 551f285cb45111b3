/**
 * The chevrotain parser: tokens -> AST (src/compiler/syntax/ast.ts). The rules
 * follow grammar/qzo.ebnf one for one; a test keeps the two in step.
 */
import { EmbeddedActionsParser, type IToken } from "chevrotain";
import type * as A from "./ast.js";
import * as T from "./tokens.js";
import type { SourceFile, Span } from "../source.js";

class QzoParser extends EmbeddedActionsParser {
  file!: SourceFile;

  constructor() {
    // No error recovery: after a syntax error the rest of the file would only
    // produce follow-on noise. Semantic errors are all reported in one run.
    super(T.allTokens, { recoveryEnabled: false, maxLookahead: 3 });
    this.performSelfAnalysis();
  }

  // ------------------------------------------------------------ helpers

  private from(start: IToken): Span {
    const last = this.LA(0);
    const end = Number.isNaN(last.startOffset) ? start.startOffset : last.startOffset + last.image.length;
    return { file: this.file, start: start.startOffset, end: Math.max(end, start.startOffset) };
  }

  private tokSpan(t: IToken): Span {
    return { file: this.file, start: t.startOffset, end: t.startOffset + t.image.length };
  }

  private ident(t: IToken): A.Ident {
    return { name: t.image, span: this.tokSpan(t) };
  }

  private name = this.RULE("name", (): A.Ident => {
    const t = this.CONSUME(T.Name);
    return this.ACTION(() => this.ident(t));
  });

  private stringLit = this.RULE("stringLit", (): A.StringLit => {
    const t = this.CONSUME(T.StringTok);
    return this.ACTION(() => ({ kind: "string", value: unquote(t.image), span: this.tokSpan(t) }));
  });

  // ------------------------------------------------------------ file

  fileRule = this.RULE("file", (): A.File => {
    const start = this.LA(1);
    const imports: A.ImportDecl[] = [];
    const decls: A.TopDecl[] = [];
    this.MANY(() => imports.push(this.SUBRULE(this.importDecl)));
    this.MANY2(() => {
      this.OR([
        { ALT: () => decls.push(this.SUBRULE(this.formatDecl)) },
        { ALT: () => decls.push(this.SUBRULE(this.modelDecl)) },
      ]);
    });
    return this.ACTION(() => ({
      imports,
      decls,
      endComments: [],
      span: { file: this.file, start: 0, end: Math.max(this.file.text.length, start.startOffset || 0) },
    }));
  });

  private importDecl = this.RULE("importDecl", (): A.ImportDecl => {
    const start = this.CONSUME(T.Import);
    const path = this.SUBRULE(this.stringLit);
    return this.ACTION(() => ({ kind: "import", path, leading: [], span: this.from(start) }));
  });

  // ------------------------------------------------------------ formats

  private formatDecl = this.RULE("formatDecl", (): A.FormatDecl => {
    const start = this.CONSUME(T.Format);
    const name = this.SUBRULE(this.name);
    const clauses: A.FormatClause[] = [];
    this.CONSUME(T.LBrace);
    this.MANY(() => {
      const c = this.OR([
        { ALT: () => this.SUBRULE(this.codeClause) },
        { ALT: () => this.SUBRULE(this.blockClause) },
        { ALT: () => this.SUBRULE(this.scaleClause) },
        { ALT: () => this.SUBRULE(this.zeroClause) },
        { ALT: () => this.SUBRULE(this.minClause) },
        { ALT: () => this.SUBRULE(this.codebookClause) },
        { ALT: () => this.SUBRULE(this.layoutClause) },
      ]);
      clauses.push(c);
    });
    this.CONSUME(T.RBrace);
    return this.ACTION(() => ({ kind: "format", name, clauses, leading: [], endComments: [], span: this.from(start) }));
  });

  private codeClause = this.RULE("codeClause", (): A.CodeClause => {
    const start = this.CONSUME(T.Code);
    const type = this.SUBRULE(this.name);
    let offset: A.Expr | undefined;
    let lookup: A.Ident | undefined;
    this.OPTION(() => {
      this.OR([
        { ALT: () => { this.CONSUME(T.Offset); offset = this.SUBRULE(this.expr); } },
        { ALT: () => { this.CONSUME(T.Lookup); lookup = this.SUBRULE2(this.name); } },
      ]);
    });
    return this.ACTION(() => ({
      kind: "code", type, leading: [], span: this.from(start),
      ...(offset ? { offset } : {}), ...(lookup ? { lookup } : {}),
    }));
  });

  private blockClause = this.RULE("blockClause", (): A.BlockClause => {
    const start = this.CONSUME(T.Block);
    const size = this.SUBRULE(this.expr);
    this.CONSUME(T.Along);
    const axis = this.SUBRULE(this.name);
    return this.ACTION(() => ({ kind: "block", size, axis, leading: [], span: this.from(start) }));
  });

  private scaleClause = this.RULE("scaleClause", (): A.ScaleClause => {
    const start = this.CONSUME(T.Scale);
    const dtype = this.SUBRULE(this.name);
    let per: A.Ident | undefined;
    this.OPTION(() => { this.CONSUME(T.Per); per = this.SUBRULE2(this.name); });
    return this.ACTION(() => ({ kind: "scale", dtype, leading: [], span: this.from(start), ...(per ? { per } : {}) }));
  });

  private zeroClause = this.RULE("zeroClause", (): A.ZeroClause => {
    const start = this.CONSUME(T.Zero);
    const type = this.SUBRULE(this.name);
    let adjust: A.Expr | undefined;
    this.OPTION(() => { this.CONSUME(T.Adjust); adjust = this.SUBRULE(this.expr); });
    return this.ACTION(() => ({ kind: "zero", type, leading: [], span: this.from(start), ...(adjust ? { adjust } : {}) }));
  });

  private minClause = this.RULE("minClause", (): A.MinClause => {
    const start = this.CONSUME(T.Min);
    const dtype = this.SUBRULE(this.name);
    return this.ACTION(() => ({ kind: "min", dtype, leading: [], span: this.from(start) }));
  });

  private codebookClause = this.RULE("codebookClause", (): A.CodebookClause => {
    const start = this.CONSUME(T.Codebook);
    const name = this.SUBRULE(this.name);
    const type = this.SUBRULE(this.typeExpr);
    let values: A.ListExpr | undefined;
    let additive = false;
    let tensor: A.StringLit | undefined;
    this.OPTION(() => {
      this.OR([
        { ALT: () => { this.CONSUME(T.Equals); values = this.SUBRULE(this.listExpr); } },
        {
          ALT: () => {
            this.CONSUME(T.Additive);
            additive = true;
            this.OPTION2(() => { this.CONSUME(T.In); tensor = this.SUBRULE(this.stringLit); });
          },
        },
      ]);
    });
    return this.ACTION(() => ({
      kind: "codebook", name, type, additive, leading: [], span: this.from(start), ...(tensor ? { tensor } : {}),
      ...(values ? { values } : {}),
    }));
  });

  private layoutClause = this.RULE("layoutClause", (): A.LayoutClause => {
    const start = this.CONSUME(T.Layout);
    const layout = this.OR([
      { ALT: () => this.SUBRULE(this.recordLayout) },
      { ALT: () => this.SUBRULE(this.tensorsLayout) },
    ]);
    return this.ACTION(() => ({ kind: "layout", layout, leading: [], span: this.from(start) }));
  });

  private recordLayout = this.RULE("recordLayout", (): A.RecordLayout => {
    const start = this.CONSUME(T.Record);
    const bytes = this.SUBRULE(this.expr);
    const fields: A.RecordField[] = [];
    this.CONSUME(T.LBrace);
    this.MANY(() => fields.push(this.SUBRULE(this.recordField)));
    this.CONSUME(T.RBrace);
    return this.ACTION(() => ({ kind: "record", bytes, fields, endComments: [], span: this.from(start) }));
  });

  private recordField = this.RULE("recordField", (): A.RecordField => {
    const start = this.LA(1);
    const field = this.SUBRULE(this.name);
    let index: A.Ident | undefined;
    let bit: A.Expr | undefined;
    this.OPTION(() => { this.CONSUME(T.LBracket); index = this.SUBRULE2(this.name); this.CONSUME(T.RBracket); });
    this.CONSUME(T.At);
    const byte = this.SUBRULE(this.expr);
    this.OPTION2(() => { this.CONSUME(T.Bit); bit = this.SUBRULE2(this.expr); });
    return this.ACTION(() => ({
      field, byte, leading: [], span: this.from(start),
      ...(index ? { index } : {}), ...(bit ? { bit } : {}),
    }));
  });

  private tensorsLayout = this.RULE("tensorsLayout", (): A.TensorsLayout => {
    const start = this.CONSUME(T.Tensors);
    const fields: A.TensorField[] = [];
    this.CONSUME(T.LBrace);
    this.MANY(() => fields.push(this.SUBRULE(this.tensorField)));
    this.CONSUME(T.RBrace);
    return this.ACTION(() => ({ kind: "tensors", fields, endComments: [], span: this.from(start) }));
  });

  private tensorField = this.RULE("tensorField", (): A.TensorField => {
    const start = this.LA(1);
    const field = this.SUBRULE(this.name);
    this.CONSUME(T.In);
    const tensor = this.SUBRULE(this.stringLit);
    const type = this.SUBRULE(this.typeExpr);
    this.CONSUME(T.At);
    const at = this.SUBRULE(this.bracketList);
    let bit: A.Expr | undefined;
    this.OPTION(() => { this.CONSUME(T.Bit); bit = this.SUBRULE(this.expr); });
    return this.ACTION(() => ({
      field, tensor, type, at, leading: [], span: this.from(start), ...(bit ? { bit } : {}),
    }));
  });

  // ------------------------------------------------------------ types

  private typeExpr = this.RULE("typeExpr", (): A.TypeExpr => {
    const start = this.LA(1);
    const base = this.SUBRULE(this.name);
    let shape: A.Expr[] = [];
    let fallback: A.Ident | undefined;
    this.OPTION(() => { shape = this.SUBRULE(this.bracketList); });
    this.OPTION2(() => { this.CONSUME(T.Or); fallback = this.SUBRULE2(this.name); });
    return this.ACTION(() => ({ base, shape, span: this.from(start), ...(fallback ? { fallback } : {}) }));
  });

  private bracketList = this.RULE("bracketList", (): A.Expr[] => {
    const items: A.Expr[] = [];
    this.CONSUME(T.LBracket);
    this.MANY_SEP({ SEP: T.Comma, DEF: () => items.push(this.SUBRULE(this.expr)) });
    this.CONSUME(T.RBracket);
    return items;
  });

  // ------------------------------------------------------------ models

  private modelDecl = this.RULE("modelDecl", (): A.ModelDecl => {
    const start = this.CONSUME(T.Model);
    const name = this.SUBRULE(this.name);
    const items: A.ModelItem[] = [];
    this.CONSUME(T.LBrace);
    this.MANY(() => {
      const item = this.OR([
        { ALT: () => this.SUBRULE(this.configBlock) },
        { ALT: () => this.SUBRULE(this.paramDecl) },
        { ALT: () => this.SUBRULE(this.paramLoop) },
        { ALT: () => this.SUBRULE(this.graphDecl) },
        { ALT: () => this.SUBRULE(this.trainBlock) },
      ]);
      items.push(item);
    });
    this.CONSUME(T.RBrace);
    return this.ACTION(() => ({ kind: "model", name, items, leading: [], endComments: [], span: this.from(start) }));
  });

  private configBlock = this.RULE("configBlock", (): A.ConfigBlock => {
    const start = this.CONSUME(T.Config);
    const entries: A.ConfigEntry[] = [];
    this.CONSUME(T.LBrace);
    this.MANY(() => entries.push(this.SUBRULE(this.configEntry)));
    this.CONSUME(T.RBrace);
    return this.ACTION(() => ({ kind: "config", entries, leading: [], endComments: [], span: this.from(start) }));
  });

  private configEntry = this.RULE("configEntry", (): A.ConfigEntry => {
    const start = this.LA(1);
    const name = this.SUBRULE(this.name);
    this.CONSUME(T.Colon);
    const type = this.OR([
      { ALT: () => this.SUBRULE2(this.name) },
      { ALT: () => { const t = this.CONSUME(T.Format); return this.ACTION(() => this.ident(t)); } },
    ]);
    this.CONSUME(T.Equals);
    const value = this.SUBRULE(this.expr);
    const sources: A.SourceRef[] = [];
    this.OPTION(() => {
      this.CONSUME(T.LBrace);
      this.MANY(() => sources.push(this.SUBRULE(this.sourceRef)));
      this.CONSUME(T.RBrace);
    });
    return this.ACTION(() => ({ name, type, value, sources, leading: [], span: this.from(start) }));
  });

  private paramDecl = this.RULE("paramDecl", (): A.ParamDecl => {
    const start = this.CONSUME(T.Param);
    const name = this.SUBRULE(this.name);
    let index: A.Ident | undefined;
    this.OPTION(() => { this.CONSUME(T.LBracket); index = this.SUBRULE2(this.name); this.CONSUME(T.RBracket); });
    this.CONSUME(T.Colon);
    const type = this.SUBRULE(this.typeExpr);
    const sources: A.SourceRef[] = [];
    this.OPTION2(() => {
      this.CONSUME(T.LBrace);
      this.MANY(() => sources.push(this.SUBRULE(this.sourceRef)));
      this.CONSUME(T.RBrace);
    });
    return this.ACTION(() => ({
      kind: "param", name, type, sources, leading: [], span: this.from(start), ...(index ? { index } : {}),
    }));
  });

  private sourceRef = this.RULE("sourceRef", (): A.SourceRef => {
    const start = this.LA(1);
    const family = this.SUBRULE(this.name);
    const names: A.SourceName[] = [];
    names.push(this.SUBRULE(this.sourceName));
    this.MANY(() => { this.CONSUME(T.Or); names.push(this.SUBRULE2(this.sourceName)); });
    return this.ACTION(() => ({ family, names, span: this.from(start) }));
  });

  private sourceName = this.RULE("sourceName", (): A.SourceName => {
    const start = this.LA(1);
    const tensor = this.SUBRULE(this.stringLit);
    let index: A.Expr | undefined;
    const transforms: A.CallExpr[] = [];
    this.OPTION(() => { this.CONSUME(T.LBracket); index = this.SUBRULE(this.expr); this.CONSUME(T.RBracket); });
    this.MANY(() => { this.CONSUME(T.Pipe); transforms.push(this.SUBRULE(this.callExpr)); });
    return this.ACTION(() => ({ tensor, transforms, span: this.from(start), ...(index ? { index } : {}) }));
  });

  private paramLoop = this.RULE("paramLoop", (): A.ParamLoop => {
    const start = this.CONSUME(T.For);
    const v = this.SUBRULE(this.name);
    this.CONSUME(T.In);
    const from = this.SUBRULE(this.expr);
    this.CONSUME(T.DotDot);
    const to = this.SUBRULE2(this.expr);
    const params: A.ParamDecl[] = [];
    this.CONSUME(T.LBrace);
    this.MANY(() => params.push(this.SUBRULE(this.paramDecl)));
    this.CONSUME(T.RBrace);
    return this.ACTION(() => ({
      kind: "param_loop", var: v, from, to, params, leading: [], endComments: [], span: this.from(start),
    }));
  });

  private graphDecl = this.RULE("graphDecl", (): A.GraphDecl => {
    const start = this.LA(1);
    const role = this.OR([
      { ALT: () => { this.CONSUME(T.Graph); return "graph" as const; } },
      { ALT: () => { this.CONSUME(T.Loss); return "loss" as const; } },
    ]);
    const name = this.SUBRULE(this.name);
    const inputs: A.GraphInput[] = [];
    let result: A.TypeExpr | undefined;
    this.CONSUME(T.LParen);
    this.MANY_SEP({ SEP: T.Comma, DEF: () => inputs.push(this.SUBRULE(this.graphInput)) });
    this.CONSUME(T.RParen);
    this.OPTION(() => { this.CONSUME(T.Arrow); result = this.SUBRULE(this.typeExpr); });
    const body = this.SUBRULE(this.stmtBlock);
    return this.ACTION(() => ({
      kind: "graph", role, name, inputs, body, leading: [], endComments: [], span: this.from(start),
      ...(result ? { result } : {}),
    }));
  });

  private graphInput = this.RULE("graphInput", (): A.GraphInput => {
    const start = this.LA(1);
    const name = this.SUBRULE(this.name);
    this.CONSUME(T.Colon);
    const type = this.SUBRULE(this.typeExpr);
    return this.ACTION(() => ({ name, type, span: this.from(start) }));
  });

  private stmtBlock = this.RULE("stmtBlock", (): A.Stmt[] => {
    const body: A.Stmt[] = [];
    this.CONSUME(T.LBrace);
    this.MANY(() => {
      const s = this.OR([
        { ALT: () => this.SUBRULE(this.assignStmt) },
        { ALT: () => this.SUBRULE(this.forStmt) },
        { ALT: () => this.SUBRULE(this.returnStmt) },
      ]);
      body.push(s);
    });
    this.CONSUME(T.RBrace);
    return body;
  });

  private assignStmt = this.RULE("assignStmt", (): A.AssignStmt => {
    const start = this.LA(1);
    const target = this.SUBRULE(this.name);
    this.CONSUME(T.Equals);
    const value = this.SUBRULE(this.expr);
    return this.ACTION(() => ({ kind: "assign", target, value, leading: [], span: this.from(start) }));
  });

  private forStmt = this.RULE("forStmt", (): A.ForStmt => {
    const start = this.CONSUME(T.For);
    const v = this.SUBRULE(this.name);
    this.CONSUME(T.In);
    const from = this.SUBRULE(this.expr);
    this.CONSUME(T.DotDot);
    const to = this.SUBRULE2(this.expr);
    const body = this.SUBRULE(this.stmtBlock);
    return this.ACTION(() => ({
      kind: "for", var: v, from, to, body, leading: [], endComments: [], span: this.from(start),
    }));
  });

  private returnStmt = this.RULE("returnStmt", (): A.ReturnStmt => {
    const start = this.CONSUME(T.Return);
    const value = this.SUBRULE(this.expr);
    return this.ACTION(() => ({ kind: "return", value, leading: [], span: this.from(start) }));
  });

  // ------------------------------------------------------------ training

  private trainBlock = this.RULE("trainBlock", (): A.TrainBlock => {
    const start = this.CONSUME(T.Train);
    const settings: A.TrainSetting[] = [];
    let loss: A.Ident | undefined;
    this.OPTION(() => {
      loss = this.SUBRULE(this.name);
    });
    this.CONSUME(T.LBrace);
    this.MANY(() => settings.push(this.SUBRULE(this.trainSetting)));
    this.CONSUME(T.RBrace);
    return this.ACTION(() => ({ kind: "train", ...(loss ? { loss } : {}), settings, leading: [], endComments: [], span: this.from(start) }));
  });

  private trainSetting = this.RULE("trainSetting", (): A.TrainSetting => {
    const start = this.LA(1);
    const key = this.OR([
      { ALT: () => this.SUBRULE(this.name) },
      { ALT: () => { const t = this.CONSUME(T.Loss); return this.ACTION(() => this.ident(t)); } },
    ]);
    this.CONSUME(T.Equals);
    const value = this.SUBRULE(this.expr);
    let modifier: IToken | undefined;
    this.OPTION(() => {
      modifier = this.OR2([
        { ALT: () => this.CONSUME2(T.Relative) },
        { ALT: () => this.CONSUME2(T.Absolute) },
      ]);
    });
    return this.ACTION(() => ({
      key, value, leading: [], span: this.from(start), ...(modifier ? { modifier: this.ident(modifier) } : {}),
    }));
  });

  // ------------------------------------------------------------ expressions

  private expr = this.RULE("expr", (): A.Expr => {
    let left = this.SUBRULE(this.term);
    this.MANY(() => {
      const op = this.OR([{ ALT: () => this.CONSUME(T.Plus) }, { ALT: () => this.CONSUME(T.Minus) }]);
      const right = this.SUBRULE2(this.term);
      left = this.ACTION(() => binary(op.image as A.BinaryOp, left, right));
    });
    return left;
  });

  private term = this.RULE("term", (): A.Expr => {
    let left = this.SUBRULE(this.unary);
    this.MANY(() => {
      const op = this.OR([
        { ALT: () => this.CONSUME(T.Star) },
        { ALT: () => this.CONSUME(T.Slash) },
        { ALT: () => this.CONSUME(T.Percent) },
      ]);
      const right = this.SUBRULE2(this.unary);
      left = this.ACTION(() => binary(op.image as A.BinaryOp, left, right));
    });
    return left;
  });

  private unary = this.RULE("unary", (): A.Expr =>
    this.OR([
      {
        ALT: () => {
          const minus = this.CONSUME(T.Minus);
          const operand = this.SUBRULE(this.unary);
          return this.ACTION((): A.Expr => ({ kind: "unary", op: "-", operand, span: this.from(minus) }));
        },
      },
      { ALT: () => this.SUBRULE(this.postfix) },
    ]),
  );

  private postfix = this.RULE("postfix", (): A.Expr => {
    const start = this.LA(1);
    let target = this.SUBRULE(this.primary);
    this.MANY(() => {
      const indices = this.SUBRULE(this.bracketList);
      target = this.ACTION((): A.Expr => ({ kind: "index", target, indices, span: this.from(start) }));
    });
    return target;
  });

  private primary = this.RULE("primary", (): A.Expr =>
    this.OR([
      {
        ALT: () => {
          const t = this.CONSUME(T.NumberTok);
          return this.ACTION((): A.Expr => {
            const isInt = /^\d+$/.test(t.image);
            return { kind: "number", text: t.image, value: Number(t.image), isInt, span: this.tokSpan(t) };
          });
        },
      },
      { ALT: () => this.SUBRULE(this.stringLit) },
      {
        ALT: () => {
          const t = this.OR2([{ ALT: () => this.CONSUME(T.True) }, { ALT: () => this.CONSUME(T.False) }]);
          return this.ACTION((): A.Expr => ({ kind: "bool", value: t.image === "true", span: this.tokSpan(t) }));
        },
      },
      { GATE: () => this.LA(2).tokenType === T.LParen, ALT: () => this.SUBRULE(this.callExpr) },
      {
        ALT: () => {
          const t = this.CONSUME(T.Name);
          return this.ACTION((): A.Expr => ({ kind: "name", name: t.image, span: this.tokSpan(t) }));
        },
      },
      {
        ALT: () => {
          this.CONSUME(T.LParen);
          const inner = this.SUBRULE(this.expr);
          this.CONSUME(T.RParen);
          return inner;
        },
      },
      { ALT: () => this.SUBRULE(this.listExpr) },
    ]),
  );

  private callExpr = this.RULE("callExpr", (): A.CallExpr => {
    const start = this.LA(1);
    const callee = this.SUBRULE(this.name);
    const args: A.Expr[] = [];
    const named: A.NamedArg[] = [];
    this.CONSUME(T.LParen);
    this.MANY_SEP({
      SEP: T.Comma,
      DEF: () => {
        this.OR([
          {
            GATE: () => this.LA(2).tokenType === T.Equals,
            ALT: () => {
              const argStart = this.LA(1);
              const name = this.SUBRULE2(this.name);
              this.CONSUME(T.Equals);
              const value = this.SUBRULE(this.expr);
              this.ACTION(() => named.push({ name, value, span: this.from(argStart) }));
            },
          },
          { ALT: () => { const e = this.SUBRULE2(this.expr); this.ACTION(() => args.push(e)); } },
        ]);
      },
    });
    this.CONSUME(T.RParen);
    return this.ACTION(() => ({ kind: "call", callee, args, named, span: this.from(start) }));
  });

  private listExpr = this.RULE("listExpr", (): A.ListExpr => {
    const start = this.LA(1);
    const items = this.SUBRULE(this.bracketList);
    return this.ACTION(() => ({ kind: "list", items, span: this.from(start) }));
  });
}

function binary(op: A.BinaryOp, left: A.Expr, right: A.Expr): A.Expr {
  return { kind: "binary", op, left, right, span: { file: left.span.file, start: left.span.start, end: right.span.end } };
}

function unquote(image: string): string {
  return image.slice(1, -1).replace(/\\(.)/g, (_m, c: string) => (c === "n" ? "\n" : c === "t" ? "\t" : c));
}

let shared: QzoParser | undefined;

/** The one parser instance (chevrotain parsers are costly to build and reusable). */
export function qzoParser(): QzoParser {
  shared ??= new QzoParser();
  return shared;
}

/** Names of the parser's grammar rules, for the test that compares them with grammar/qzo.ebnf. */
export function grammarRuleNames(): string[] {
  return Object.keys(qzoParser().getGAstProductions());
}

export type { QzoParser };
