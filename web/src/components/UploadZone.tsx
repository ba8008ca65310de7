import { motion } from "framer-motion";
import { useRef, useState } from "react";

interface Props {
  disabled: boolean;
  onFile(file: File): void;
}

/** Drag a file onto the zone, or click it (or press Enter) to choose one. */
export function UploadZone({ disabled, onFile }: Props) {
  const input = useRef<HTMLInputElement>(null);
  const [over, setOver] = useState(false);
  return (
    <motion.div
      className={`upload ${over ? "upload--over" : ""} ${disabled ? "upload--disabled" : ""}`}
      data-testid="upload-zone"
      role="button"
      tabIndex={0}
      aria-disabled={disabled}
      whileHover={disabled ? undefined : { scale: 1.01 }}
      onClick={() => !disabled && input.current?.click()}
      onKeyDown={(e) => {
        if (!disabled && (e.key === "Enter" || e.key === " ")) input.current?.click();
      }}
      onDragOver={(e) => {
        e.preventDefault();
        if (!disabled) setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        e.preventDefault();
        setOver(false);
        const file = e.dataTransfer.files[0];
        if (file && !disabled) onFile(file);
      }}
    >
      <input
        ref={input}
        type="file"
        data-testid="file-input"
        accept="video/*,audio/*,image/*"
        className="visually-hidden"
        tabIndex={-1}
        onChange={(e) => {
          const file = e.target.files?.[0];
          if (file) onFile(file);
          e.target.value = "";
        }}
      />
      <div className="upload__icon" aria-hidden>⬆</div>
      <div className="upload__title">Drop a video, audio file or image here</div>
      <div className="upload__hint">or click to choose one</div>
    </motion.div>
  );
}
